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


def https_address(value: object) -> Address:
    """``host:port`` of an HTTPS listener or peer (``https://`` or ``tls://`` tolerated)."""
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError("an HTTPS address is a string like '127.0.10.1:8443'")
    text = value.strip()
    for prefix in ("https://", "tls://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    if "://" in text:
        raise ValueError("HTTPS only: write host:port")
    return Address.parse("tls://" + text)


def http_address(value: object) -> Address:
    """``host:port`` of a plain-HTTP listener on the internal network (``http://`` tolerated)."""
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError("an HTTP address is a string like '127.0.10.1:8080'")
    text = value.strip()
    if text.lower().startswith("http://"):
        text = text[len("http://") :]
    if "://" in text:
        raise ValueError("write host:port (plain HTTP on the internal network)")
    return Address.parse("tcp://" + text)


AddressField = Annotated[Address, BeforeValidator(address)]
#: ``host:port`` served or reached over HTTPS (``Address`` with transport ``tls``).
HttpsAddressField = Annotated[Address, BeforeValidator(https_address)]
#: ``host:port`` served or reached over plain HTTP inside one system (transport ``tcp``).
HttpAddressField = Annotated[Address, BeforeValidator(http_address)]
McIdField = Annotated[str, BeforeValidator(mc_id)]
