"""Validated value types shared by every configuration model (pydantic annotated types).

Kept at the bottom of the package graph so that ``border`` (partner agreements) and ``deploy``
(whole deployments) describe their configuration with the same vocabulary.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.sip.transport import Address


class ConfigModel(BaseModel):
    """Base of configuration models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError("an address must be a string like 'tls://127.0.0.1:5061'")
    return Address.parse(value)


def mc_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("an MC service ID must be a string like 'sip:user@domain'")
    try:
        return str(McServiceId.parse(value))
    except IdentityError as exc:
        raise ValueError(str(exc)) from None


def domain_name(value: str) -> str:
    value = value.strip().lower()
    labels = value.split(".")
    if not value or any(not label or not label.replace("-", "").isalnum() for label in labels):
        raise ValueError(f"not a domain name: {value!r}")
    return value


AddressField = Annotated[Address, BeforeValidator(address)]
McIdField = Annotated[str, BeforeValidator(mc_id)]
