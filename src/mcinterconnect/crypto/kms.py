"""The key management server (KMS) of MC security, sans-IO: TS 33.180 Annex D documents and logic.

What it holds, with the clause each part stands for:

* ``KmsCertificate`` — the KMS certificate (33.180 D.3.1, structure [impl]): the KMS URI, its key
  periods (UserKeyPeriod, UserKeyOffset, F.2.1), the SAKKE public key Z (``PubEncKey``, RFC 6508
  §2.2) and the ECCSI KPAK (``PubAuthKey``, RFC 6507 §4.2), with ``to_xml``/``from_xml``;
* ``KeySet`` — the key material of one user for one key period (D.3.2, ``KmsKeySet``): the UID
  (``UserID``, base64), the RSK (``UserDecryptKey``), the SSK and PVT (``UserSigningKeySSK``,
  ``UserPubTokenPVT``), with ``to_xml``/``from_xml``;
* ``KmsResponse`` — the ``KmsResponse`` document carrying ``KmsInit`` (the certificate),
  ``KmsKeyProv`` (key sets) or ``KmsCertCache`` (external certificates) (D.2);
* ``KmsSecrets`` — KSAK and z, sealed at rest with AES-256-GCM under a storage key;
* ``Kms`` — issuing key sets (RFC 6507 §5.1.1, RFC 6508 §6.1.1) for the UIDs of F.2.1;
* client side: ``validate_key_set`` ("provisioned key material is validated on receipt",
  spec/crypto.md §7, WA-CR-06) and ``KeyRing``, the previous, current and next key sets of one user
  (WA-CR-07).

Documents are in the namespace ``urn:3gpp:ns:mcsecKMSInterface:1.0`` [inferred, not verified from
the spec text].  Every refusal raises ``KmsError`` whose ``reason`` is a stable code and whose
message names the element and the fault, never key bytes.  No I/O here: reading files, HTTP and
configuration live in ``services/kms.py``.

Side channels (spec/crypto.md §11): the KMS secrets go through ``eccsi.issue_ssk`` (KSAK·G by
OpenSSL, SSK = KSAK + HS·v in Python integers) and ``sakke.issue_rsk`` (Python/GMP arithmetic):
not constant time, risk recorded there.  Python cannot zeroise memory.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import operator
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final, Literal, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from mcinterconnect.crypto import ec, eccsi, sakke, uid
from mcinterconnect.crypto.ec import P256
from mcinterconnect.xmlsafe import XmlSafetyError, parse_xml

__all__ = [
    "CERTIFICATE_VERSION",
    "DEFAULT_USER_KEY_PERIOD",
    "NAMESPACE",
    "PARAMETER_SET",
    "STORAGE_KEY_LENGTH",
    "USER_ID_FORMAT",
    "KeyRing",
    "KeySet",
    "Kms",
    "KmsCertificate",
    "KmsError",
    "KmsMessageKind",
    "KmsResponse",
    "KmsSecrets",
    "Role",
    "generate_storage_key",
    "validate_key_set",
]

#: Namespace of the KMS interface documents [inferred, not verified from the spec text].
NAMESPACE: Final = "urn:3gpp:ns:mcsecKMSInterface:1.0"
_NS: Final = "{" + NAMESPACE + "}"
#: NAMESPACE as default namespace (lxml-stubs types nsmap keys without the ``None`` key).
_NSMAP: Final = cast("dict[str, str]", {None: NAMESPACE})
#: ``Version`` of KmsCertificate, KmsInit, KmsKeyProv, KmsCertCache and KmsKeySet [impl].
CERTIFICATE_VERSION: Final = "1.0.0"
#: ``Version`` of KmsResponse [impl].
RESPONSE_VERSION: Final = "1.1.0"
#: ``UserIdFormat`` 2: the hashed MIKEY-SAKKE UID of 33.180 F.2.1 [impl].
USER_ID_FORMAT: Final = 2
#: ``ParameterSet`` 1: SAKKE parameter set 1 of RFC 6509 §2.1.1, ECCSI on P-256.
PARAMETER_SET: Final = sakke.PARAMETER_SET
#: Default UserKeyPeriod: 30 days (the 33.179 F.2.1 example).
DEFAULT_USER_KEY_PERIOD: Final = 2_592_000
#: Octets of the AES-256-GCM storage key that seals the KMS secrets.
STORAGE_KEY_LENGTH: Final = 32
#: Largest KMS document read (a KmsResponse with many key sets or certificates).
MAX_DOCUMENT_BYTES: Final = 262_144
#: Most key sets or certificates in one KmsResponse.
MAX_ITEMS: Final = 64

_UID_LENGTH: Final = uid.UID_LENGTH
_SSK_LENGTH: Final = eccsi.N
_MAX_TEXT: Final = 2048
_MAX_UINT: Final = (1 << 63) - 1
_UINT_RE: Final = re.compile(r"[0-9]{1,19}")
_HEX_RE: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")

# Sealed secrets: prefix || nonce (12) || AES-256-GCM(KSAK (32) || z (FIELD_LENGTH)) || tag (16).
_SEALED_PREFIX: Final = b"MCIC-KMS-SECRETS-1\n"
_SEAL_LABEL: Final = b"mcinterconnect KMS secrets (ECCSI KSAK, SAKKE z), AES-256-GCM, version 1"
_NONCE_LENGTH: Final = 12
_KSAK_LENGTH: Final = 32
_SEALED_LENGTH: Final = len(_SEALED_PREFIX) + _NONCE_LENGTH + _KSAK_LENGTH + sakke.FIELD_LENGTH + 16

Role = Literal["Root", "External"]
_ROLES: Final = ("Root", "External")
KmsMessageKind = Literal["init", "keyprov", "certcache"]
_MESSAGE_TAGS: Final[dict[str, str]] = {
    "init": "KmsInit",
    "keyprov": "KmsKeyProv",
    "certcache": "KmsCertCache",
}

_UTC = datetime.UTC


class KmsError(ValueError):
    """A KMS document, key set or secret was refused. ``reason`` is a stable code for logs:

    documents: ``xml-unreadable``, ``root-unexpected``, ``version-unsupported``, ``role-unknown``,
    ``element-missing``, ``element-duplicate``, ``value-invalid``, ``hex-invalid``,
    ``point-invalid``, ``user-id-format``, ``parameter-set``, ``validity-invalid``, ``revoked``,
    ``message-invalid``; secrets: ``storage-key-invalid``, ``secrets-format``,
    ``secrets-unsealable``, ``secrets-invalid``, ``secrets-mismatch``; provisioning and checks:
    ``identifier-invalid``, ``period-invalid``, ``period-outside-certificate``, ``kms-mismatch``,
    ``user-mismatch``, ``user-id-mismatch``, ``period-mismatch``, ``ssk-invalid``,
    ``rsk-invalid``, ``period-missing``.  The message never holds key bytes.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- values ------------------------------------------------------------------------------------


def _check_token(name: str, value: object, *, spaces: bool = False) -> str:
    """A URI or name as carried in a KMS document: printable, no surrounding whitespace."""
    if not isinstance(value, str):
        raise KmsError("value-invalid", f"{name} must be a string, not {type(value).__name__}")
    if not value:
        raise KmsError("value-invalid", f"{name} is empty")
    if len(value) > _MAX_TEXT:
        raise KmsError("value-invalid", f"{name} is longer than {_MAX_TEXT} characters")
    # isprintable() is false for controls, line breaks, tabs and lone surrogates.
    if not value.isprintable() or value != value.strip() or (not spaces and " " in value):
        raise KmsError("value-invalid", f"{name} holds whitespace or non-printable characters")
    return value


def _check_time(name: str, value: object) -> datetime.datetime:
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise KmsError("value-invalid", f"{name} must be a timezone-aware datetime")
    try:
        return value.astimezone(_UTC)
    except (OverflowError, ValueError):
        raise KmsError("value-invalid", f"{name} is out of range") from None


def _format_time(value: datetime.datetime) -> str:
    return value.astimezone(_UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(name: str, text: str) -> datetime.datetime:
    if len(text) > 64:
        raise KmsError("value-invalid", f"<{name}> is not a date and time")
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise KmsError("value-invalid", f"<{name}> is not an ISO 8601 date and time") from None
    if value.tzinfo is None:
        raise KmsError("value-invalid", f"<{name}> has no time zone (UTC offset or Z required)")
    return _check_time(f"<{name}>", value)


def _parse_uint(name: str, text: str) -> int:
    if not _UINT_RE.fullmatch(text) or int(text) > _MAX_UINT:
        raise KmsError("value-invalid", f"<{name}> is not an unsigned integer below 2^63")
    return int(text)


def _parse_hex(name: str, text: str, length: int) -> bytes:
    compact = "".join(text.split())  # long values may be wrapped over lines
    if not _HEX_RE.fullmatch(compact):
        raise KmsError("hex-invalid", f"<{name}> is not an even number of hexadecimal digits")
    data = bytes.fromhex(compact)
    if len(data) != length:
        raise KmsError("hex-invalid", f"<{name}> holds {len(data)} octets, expected {length}")
    return data


def _parse_bool(name: str, text: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise KmsError("value-invalid", f"<{name}> is not an xs:boolean")


def _decode_point(name: str, curve: ec.Curve, data: bytes) -> tuple[int, int]:
    try:
        point = ec.decode_point(curve, data)
    except ec.EcError as exc:
        raise KmsError("point-invalid", f"<{name}>: {exc}") from None
    assert point is not None  # decode_point never returns the point at infinity
    return point


def _check_point(name: str, curve: ec.Curve, value: object) -> tuple[int, int]:
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(c, int) for c in value)
        and ec.is_on_curve(curve, value)
    ):
        raise KmsError("point-invalid", f"{name} is not a point of {curve.name}")
    return value


def _hex_point(curve: ec.Curve, point: tuple[int, int]) -> str:
    return ec.encode_point(curve, point).hex()


def _ntp_to_datetime(seconds: int) -> datetime.datetime:
    try:
        return datetime.datetime.fromtimestamp(uid.unix_from_ntp_seconds(seconds), _UTC)
    except (OverflowError, ValueError, OSError, uid.UidError):
        raise KmsError("period-invalid", "the key period lies outside the representable dates") from None


def _period_bounds(period: uid.KeyPeriod, number: int) -> tuple[datetime.datetime, datetime.datetime]:
    """(start, end) of key period ``number`` as UTC datetimes (start inclusive, end exclusive)."""
    return _ntp_to_datetime(period.start_of(number)), _ntp_to_datetime(period.end_of(number))


# --- XML helpers -------------------------------------------------------------------------------


def _parse_document(data: bytes) -> etree._Element:
    if not isinstance(data, bytes | bytearray):
        raise KmsError("xml-unreadable", f"a KMS document is bytes, not {type(data).__name__}")
    try:
        return parse_xml(bytes(data), max_bytes=MAX_DOCUMENT_BYTES, max_elements=20 * MAX_ITEMS + 100)
    except XmlSafetyError as exc:
        raise KmsError("xml-unreadable", f"KMS document refused: {exc.reason}") from None


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return "?"
    return etree.QName(tag).localname[:40]


def _expect_root(element: etree._Element, name: str) -> None:
    if element.tag != _NS + name:
        namespace = etree.QName(element.tag).namespace if isinstance(element.tag, str) else None
        where = f"namespace {namespace[:60]!r}" if namespace else "no namespace"
        raise KmsError(
            "root-unexpected",
            f"expected <{name}> in namespace {NAMESPACE}, got <{_local(element)}> in {where}",
        )


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if child.tag == _NS + name]


def _child(element: etree._Element, name: str) -> etree._Element | None:
    found = _children(element, name)
    if len(found) > 1:
        raise KmsError("element-duplicate", f"<{_local(element)}> has more than one <{name}>")
    return found[0] if found else None


def _text(element: etree._Element, name: str) -> str:
    child = _child(element, name)
    if child is None:
        raise KmsError("element-missing", f"<{_local(element)}> has no <{name}>")
    text = (child.text or "").strip()
    if not text:
        raise KmsError("element-missing", f"<{_local(element)}>: <{name}> is empty")
    if len(text) > 4 * _MAX_TEXT:
        raise KmsError("value-invalid", f"<{name}> is too long")
    return text


def _optional_text(element: etree._Element, name: str) -> str | None:
    return _text(element, name) if _child(element, name) is not None else None


def _token(element: etree._Element, name: str, *, spaces: bool = False) -> str:
    return _check_token(f"<{name}>", _text(element, name), spaces=spaces)


def _check_revoked(element: etree._Element) -> None:
    revoked = _optional_text(element, "Revoked")
    if revoked is not None and _parse_bool("Revoked", revoked):
        raise KmsError("revoked", f"<{_local(element)}> is revoked")


def _check_version(element: etree._Element) -> None:
    version = element.get("Version")
    if version != CERTIFICATE_VERSION:
        shown = "no Version" if version is None else f"Version {version[:20]!r}"
        raise KmsError(
            "version-unsupported", f"<{_local(element)}> has {shown}, expected {CERTIFICATE_VERSION}"
        )


def _element(tag: str, parent: etree._Element | None = None, **attributes: str) -> etree._Element:
    if parent is None:
        return etree.Element(_NS + tag, attrib=attributes, nsmap=_NSMAP)
    return etree.SubElement(parent, _NS + tag, attrib=attributes)


def _add(parent: etree._Element, tag: str, text: str) -> None:
    etree.SubElement(parent, _NS + tag).text = text


def _serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- the KMS certificate (D.3.1) ---------------------------------------------------------------


@dataclass(frozen=True)
class KmsCertificate:
    """A KMS certificate: the public parameters of one KMS (security domain).

    ``pub_enc_key`` is the SAKKE KMS public key Z (``PubEncKey``), ``pub_auth_key`` the ECCSI KPAK
    (``PubAuthKey``).  ``role`` is ``Root`` for a user's own (home) KMS and ``External`` for a
    partner's KMS imported by manual cross-certification (WA-IC-19).  A revoked certificate is
    never held: ``from_xml`` refuses it.  ``UserIdFormat`` is always 2 and ``ParameterSet`` 1.
    """

    kms_uri: str
    cert_uri: str
    issuer: str
    valid_from: datetime.datetime
    valid_to: datetime.datetime
    user_key_period: int
    user_key_offset: int
    pub_enc_key: tuple[int, int]
    pub_auth_key: tuple[int, int]
    role: Role = "Root"

    def __post_init__(self) -> None:
        _check_token("KmsUri", self.kms_uri)
        _check_token("CertUri", self.cert_uri)
        _check_token("Issuer", self.issuer, spaces=True)
        start = _check_time("ValidFrom", self.valid_from)
        end = _check_time("ValidTo", self.valid_to)
        if end <= start:
            raise KmsError("validity-invalid", "ValidTo is not after ValidFrom")
        try:
            uid.KeyPeriod(self.user_key_period, self.user_key_offset)
        except uid.UidError as exc:
            raise KmsError("value-invalid", f"UserKeyPeriod/UserKeyOffset: {exc}") from None
        _check_point("PubEncKey (SAKKE Z)", sakke.CURVE, self.pub_enc_key)
        _check_point("PubAuthKey (ECCSI KPAK)", P256, self.pub_auth_key)
        if self.role not in _ROLES:
            raise KmsError("role-unknown", f"role {str(self.role)[:20]!r} is neither Root nor External")

    @property
    def key_period(self) -> uid.KeyPeriod:
        """The key period segmentation of this KMS (UserKeyPeriod, UserKeyOffset)."""
        return uid.KeyPeriod(self.user_key_period, self.user_key_offset)

    def as_role(self, role: Role) -> KmsCertificate:
        """The same certificate with another role (an imported partner certificate is External)."""
        return replace(self, role=role)

    def is_valid_at(self, when: datetime.datetime) -> bool:
        """Whether ``when`` lies in [ValidFrom, ValidTo)."""
        return self.valid_from <= _check_time("time", when) < self.valid_to

    def fingerprint(self) -> str:
        """SHA-256 over the KMS URI, key periods and both public keys, in hex: what two operators
        compare out of band when they exchange certificates (the role and dates do not count)."""
        digest = hashlib.sha256()
        for part in (
            b"mcinterconnect KMS certificate fingerprint 1",
            self.kms_uri.encode("utf-8"),
            str(self.user_key_period).encode("ascii"),
            str(self.user_key_offset).encode("ascii"),
            ec.encode_point(sakke.CURVE, self.pub_enc_key),
            ec.encode_point(P256, self.pub_auth_key),
        ):
            digest.update(len(part).to_bytes(4, "big") + part)
        return digest.hexdigest()

    def to_element(self, parent: etree._Element | None = None) -> etree._Element:
        root = _element("KmsCertificate", parent, Version=CERTIFICATE_VERSION, Role=self.role)
        _add(root, "KmsUri", self.kms_uri)
        _add(root, "CertUri", self.cert_uri)
        _add(root, "Issuer", self.issuer)
        _add(root, "ValidFrom", _format_time(self.valid_from))
        _add(root, "ValidTo", _format_time(self.valid_to))
        _add(root, "Revoked", "false")
        _add(root, "UserIdFormat", str(USER_ID_FORMAT))
        _add(root, "UserKeyPeriod", str(self.user_key_period))
        _add(root, "UserKeyOffset", str(self.user_key_offset))
        _add(root, "PubEncKey", _hex_point(sakke.CURVE, self.pub_enc_key))
        _add(root, "PubAuthKey", _hex_point(P256, self.pub_auth_key))
        _add(root, "ParameterSet", str(PARAMETER_SET))
        return root

    def to_xml(self) -> bytes:
        """The certificate as a standalone UTF-8 XML document (root ``KmsCertificate``)."""
        return _serialize(self.to_element())

    @classmethod
    def from_element(cls, element: etree._Element) -> KmsCertificate:
        _expect_root(element, "KmsCertificate")
        _check_version(element)
        role = element.get("Role")
        if role not in _ROLES:
            shown = "no Role" if role is None else f"Role {role[:20]!r}"
            raise KmsError("role-unknown", f"<KmsCertificate> has {shown}, expected Root or External")
        kms_uri = _token(element, "KmsUri")
        # CertUri and Revoked are optional on receipt: published samples omit them.
        cert_uri = _optional_text(element, "CertUri")
        _check_revoked(element)
        if _parse_uint("UserIdFormat", _text(element, "UserIdFormat")) != USER_ID_FORMAT:
            raise KmsError("user-id-format", f"<UserIdFormat> is not {USER_ID_FORMAT} (hashed UID, F.2.1)")
        if _parse_uint("ParameterSet", _text(element, "ParameterSet")) != PARAMETER_SET:
            raise KmsError("parameter-set", f"<ParameterSet> is not {PARAMETER_SET} (RFC 6509 §2.1.1)")
        valid_from = _parse_time("ValidFrom", _text(element, "ValidFrom"))
        valid_to = _parse_time("ValidTo", _text(element, "ValidTo"))
        if valid_to <= valid_from:
            raise KmsError("validity-invalid", "<ValidTo> is not after <ValidFrom>")
        period = _parse_uint("UserKeyPeriod", _text(element, "UserKeyPeriod"))
        offset = _parse_uint("UserKeyOffset", _text(element, "UserKeyOffset"))
        if period == 0:
            raise KmsError("value-invalid", "<UserKeyPeriod> is 0 seconds")
        z_octets = _parse_hex("PubEncKey", _text(element, "PubEncKey"), 1 + 2 * sakke.FIELD_LENGTH)
        pub_enc_key = _decode_point("PubEncKey", sakke.CURVE, z_octets)
        try:
            sakke.validate_kms_public_key(pub_enc_key)
        except sakke.SakkeError:
            raise KmsError(
                "point-invalid", "<PubEncKey>: the point is not in the subgroup of order q"
            ) from None
        kpak_octets = _parse_hex("PubAuthKey", _text(element, "PubAuthKey"), eccsi.POINT_LENGTH)
        return cls(
            kms_uri=kms_uri,
            cert_uri=_check_token("<CertUri>", cert_uri) if cert_uri is not None else kms_uri,
            issuer=_token(element, "Issuer", spaces=True),
            valid_from=valid_from,
            valid_to=valid_to,
            user_key_period=period,
            user_key_offset=offset,
            pub_enc_key=pub_enc_key,
            pub_auth_key=_decode_point("PubAuthKey", P256, kpak_octets),
            role=role,  # type: ignore[arg-type]  # checked against _ROLES above
        )

    @classmethod
    def from_xml(cls, data: bytes) -> KmsCertificate:
        """Parse a standalone certificate document; ``KmsError`` names the fault."""
        return cls.from_element(_parse_document(data))


# --- key sets (D.3.2) --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySet:
    """The keys of one user for one key period, as a KMS delivers them (``KmsKeySet``).

    ``user_id`` is the 32-octet UID; ``ssk`` (secret) and ``pvt`` the ECCSI signing key pair;
    ``rsk`` (secret) the SAKKE receiver secret key.  The secrets are left out of ``repr``.
    Nothing here is checked against a certificate: use ``validate_key_set`` on receipt.
    """

    kms_uri: str
    cert_uri: str
    issuer: str
    user_uri: str
    user_id: bytes
    key_period_no: int
    valid_from: datetime.datetime
    valid_to: datetime.datetime
    ssk: int = field(repr=False)
    pvt: tuple[int, int]
    rsk: tuple[int, int] = field(repr=False)

    def __post_init__(self) -> None:
        _check_token("KmsUri", self.kms_uri)
        _check_token("CertUri", self.cert_uri)
        _check_token("Issuer", self.issuer, spaces=True)
        _check_token("UserUri", self.user_uri)
        if not isinstance(self.user_id, bytes) or len(self.user_id) != _UID_LENGTH:
            raise KmsError("value-invalid", f"UserID must be {_UID_LENGTH} octets")
        if isinstance(self.key_period_no, bool) or not isinstance(self.key_period_no, int):
            raise KmsError("value-invalid", "KeyPeriodNo must be an integer")
        if not 0 <= self.key_period_no <= _MAX_UINT:
            raise KmsError("value-invalid", "KeyPeriodNo is out of range")
        if _check_time("ValidTo", self.valid_to) <= _check_time("ValidFrom", self.valid_from):
            raise KmsError("validity-invalid", "ValidTo is not after ValidFrom")
        if isinstance(self.ssk, bool) or not isinstance(self.ssk, int) or not 0 < self.ssk < P256.q:
            raise KmsError("value-invalid", "UserSigningKeySSK is not in [1, q - 1]")
        _check_point("UserPubTokenPVT", P256, self.pvt)
        _check_point("UserDecryptKey", sakke.CURVE, self.rsk)

    @property
    def user_id_int(self) -> int:
        """The UID as the SAKKE identifier (a 256-bit integer)."""
        return int.from_bytes(self.user_id, "big")

    def to_element(self, parent: etree._Element | None = None) -> etree._Element:
        root = _element("KmsKeySet", parent, Version=CERTIFICATE_VERSION)
        _add(root, "KmsUri", self.kms_uri)
        _add(root, "CertUri", self.cert_uri)
        _add(root, "Issuer", self.issuer)
        _add(root, "UserUri", self.user_uri)
        _add(root, "UserID", base64.b64encode(self.user_id).decode("ascii"))
        _add(root, "ValidFrom", _format_time(self.valid_from))
        _add(root, "ValidTo", _format_time(self.valid_to))
        _add(root, "KeyPeriodNo", str(self.key_period_no))
        _add(root, "Revoked", "false")
        _add(root, "UserDecryptKey", _hex_point(sakke.CURVE, self.rsk))
        _add(root, "UserSigningKeySSK", self.ssk.to_bytes(_SSK_LENGTH, "big").hex())
        _add(root, "UserPubTokenPVT", _hex_point(P256, self.pvt))
        return root

    def to_xml(self) -> bytes:
        """The key set as a standalone UTF-8 XML document (root ``KmsKeySet``); it holds secrets."""
        return _serialize(self.to_element())

    @classmethod
    def from_element(cls, element: etree._Element) -> KeySet:
        _expect_root(element, "KmsKeySet")
        _check_revoked(element)
        try:
            user_id = base64.b64decode(_text(element, "UserID"), validate=True)
        except binascii.Error:
            raise KmsError("value-invalid", "<UserID> is not base64") from None
        if len(user_id) != _UID_LENGTH:
            raise KmsError("value-invalid", f"<UserID> holds {len(user_id)} octets, expected {_UID_LENGTH}")
        kms_uri = _token(element, "KmsUri")
        cert_uri = _optional_text(element, "CertUri")
        valid_from = _parse_time("ValidFrom", _text(element, "ValidFrom"))
        valid_to = _parse_time("ValidTo", _text(element, "ValidTo"))
        if valid_to <= valid_from:
            raise KmsError("validity-invalid", "<ValidTo> is not after <ValidFrom>")
        ssk = int.from_bytes(
            _parse_hex("UserSigningKeySSK", _text(element, "UserSigningKeySSK"), _SSK_LENGTH)
        )
        if not 0 < ssk < P256.q:
            raise KmsError("value-invalid", "<UserSigningKeySSK> is not in [1, q - 1]")
        rsk_octets = _parse_hex(
            "UserDecryptKey", _text(element, "UserDecryptKey"), 1 + 2 * sakke.FIELD_LENGTH
        )
        pvt_octets = _parse_hex("UserPubTokenPVT", _text(element, "UserPubTokenPVT"), eccsi.POINT_LENGTH)
        return cls(
            kms_uri=kms_uri,
            cert_uri=_check_token("<CertUri>", cert_uri) if cert_uri is not None else kms_uri,
            issuer=_token(element, "Issuer", spaces=True),
            user_uri=_token(element, "UserUri"),
            user_id=user_id,
            key_period_no=_parse_uint("KeyPeriodNo", _text(element, "KeyPeriodNo")),
            valid_from=valid_from,
            valid_to=valid_to,
            ssk=ssk,
            pvt=_decode_point("UserPubTokenPVT", P256, pvt_octets),
            rsk=_decode_point("UserDecryptKey", sakke.CURVE, rsk_octets),
        )

    @classmethod
    def from_xml(cls, data: bytes) -> KeySet:
        """Parse a standalone key set document; ``KmsError`` names the fault."""
        return cls.from_element(_parse_document(data))


# --- the KmsResponse document (D.2) ------------------------------------------------------------


@dataclass(frozen=True)
class KmsResponse:
    """A ``KmsResponse``: who asked (``user_uri``), when, and one ``KmsMessage``.

    ``kind`` ``init`` carries exactly one certificate (the KMS's own, ``KmsInit``), ``keyprov``
    key sets (``KmsKeyProv``), ``certcache`` any number of external certificates
    (``KmsCertCache``).  Not signed (WA-CR-06): its authenticity comes from the TLS connection.
    """

    kind: KmsMessageKind
    kms_uri: str
    user_uri: str
    time: datetime.datetime
    client_req_url: str
    certificates: tuple[KmsCertificate, ...] = ()
    key_sets: tuple[KeySet, ...] = ()
    kms_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _MESSAGE_TAGS:
            raise KmsError("message-invalid", f"unknown KMS message kind {str(self.kind)[:20]!r}")
        _check_token("KmsUri", self.kms_uri)
        _check_token("UserUri", self.user_uri)
        _check_time("Time", self.time)
        _check_token("ClientReqUrl", self.client_req_url)
        if self.kms_id is not None:
            _check_token("KmsId", self.kms_id)
        if self.kind == "init" and (len(self.certificates) != 1 or self.key_sets):
            raise KmsError("message-invalid", "<KmsInit> carries exactly one <KmsCertificate>")
        if self.kind == "keyprov" and self.certificates:
            raise KmsError("message-invalid", "<KmsKeyProv> carries key sets only")
        if self.kind == "certcache" and self.key_sets:
            raise KmsError("message-invalid", "<KmsCertCache> carries certificates only")
        if len(self.certificates) > MAX_ITEMS or len(self.key_sets) > MAX_ITEMS:
            raise KmsError("message-invalid", f"more than {MAX_ITEMS} items in one KMS message")

    def to_xml(self) -> bytes:
        root = _element("KmsResponse", Version=RESPONSE_VERSION)
        _add(root, "KmsUri", self.kms_uri)
        _add(root, "UserUri", self.user_uri)
        _add(root, "Time", _format_time(self.time))
        if self.kms_id is not None:
            _add(root, "KmsId", self.kms_id)
        _add(root, "ClientReqUrl", self.client_req_url)
        message = _element("KmsMessage", root)
        body = _element(_MESSAGE_TAGS[self.kind], message, Version=CERTIFICATE_VERSION)
        for certificate in self.certificates:
            certificate.to_element(body)
        for key_set in self.key_sets:
            key_set.to_element(body)
        return _serialize(root)

    @classmethod
    def from_xml(cls, data: bytes) -> KmsResponse:
        """Parse a ``KmsResponse`` document; ``KmsError`` names the fault."""
        root = _parse_document(data)
        _expect_root(root, "KmsResponse")
        message = _child(root, "KmsMessage")
        if message is None:
            raise KmsError("element-missing", "<KmsResponse> has no <KmsMessage>")
        bodies = [(kind, child) for kind, tag in _MESSAGE_TAGS.items() for child in _children(message, tag)]
        if len(bodies) != 1:
            raise KmsError(
                "message-invalid", "<KmsMessage> must hold exactly one of KmsInit, KmsKeyProv, KmsCertCache"
            )
        kind, body = bodies[0]
        certificates = tuple(KmsCertificate.from_element(e) for e in _children(body, "KmsCertificate"))
        key_sets = tuple(KeySet.from_element(e) for e in _children(body, "KmsKeySet"))
        kms_id = _optional_text(root, "KmsId")
        return cls(
            kind=kind,  # type: ignore[arg-type]  # a key of _MESSAGE_TAGS
            kms_uri=_token(root, "KmsUri"),
            user_uri=_token(root, "UserUri"),
            time=_parse_time("Time", _text(root, "Time")),
            client_req_url=_token(root, "ClientReqUrl"),
            certificates=certificates,
            key_sets=key_sets,
            kms_id=_check_token("<KmsId>", kms_id) if kms_id is not None else None,
        )


# --- the KMS secrets, sealed at rest -----------------------------------------------------------


def generate_storage_key() -> bytes:
    """A fresh AES-256-GCM storage key for ``KmsSecrets.seal``."""
    return secrets.token_bytes(STORAGE_KEY_LENGTH)


def _check_storage_key(storage_key: object) -> bytes:
    if not isinstance(storage_key, bytes | bytearray) or len(storage_key) != STORAGE_KEY_LENGTH:
        raise KmsError("storage-key-invalid", f"the storage key must be {STORAGE_KEY_LENGTH} octets")
    return bytes(storage_key)


def _kpak_of(ksak: int) -> tuple[int, int]:
    """KPAK = [KSAK]G, by OpenSSL (KSAK is secret)."""
    numbers = openssl_ec.derive_private_key(ksak, openssl_ec.SECP256R1()).public_key().public_numbers()
    return (numbers.x, numbers.y)


@dataclass(frozen=True)
class KmsSecrets:
    """The master secrets of one KMS: the ECCSI KSAK (RFC 6507 §4.2) and the SAKKE z (RFC 6508
    §2.2).  Never printed (``repr`` hides them); stored only sealed (``seal``/``unseal``)."""

    ksak: int = field(repr=False)
    z: int = field(repr=False)

    def __post_init__(self) -> None:
        for name, value, low, high in (("KSAK", self.ksak, 1, P256.q), ("z", self.z, 2, sakke.q)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
                raise KmsError("secrets-invalid", f"{name} is out of its range")

    @classmethod
    def generate(cls) -> KmsSecrets:
        """Fresh secrets: KSAK uniform in [1, q − 1], z uniform in [2, q − 1]."""
        return cls(ksak=eccsi.generate_kms_keys()[0], z=secrets.randbelow(sakke.q - 2) + 2)

    def pub_auth_key(self) -> tuple[int, int]:
        """KPAK = [KSAK]G."""
        return _kpak_of(self.ksak)

    def pub_enc_key(self) -> tuple[int, int]:
        """Z = [z]P."""
        point = sakke.kms_public_key(self.z)
        assert point is not None  # 2 <= z < q
        return point

    def seal(self, storage_key: bytes) -> bytes:
        """The secrets encrypted under ``storage_key`` (AES-256-GCM, random 96-bit nonce, the
        format label as associated data): what is written to disk."""
        key = _check_storage_key(storage_key)
        nonce = secrets.token_bytes(_NONCE_LENGTH)
        plaintext = self.ksak.to_bytes(_KSAK_LENGTH, "big") + self.z.to_bytes(sakke.FIELD_LENGTH, "big")
        return _SEALED_PREFIX + nonce + AESGCM(key).encrypt(nonce, plaintext, _SEAL_LABEL)

    @classmethod
    def unseal(cls, sealed: bytes, storage_key: bytes) -> KmsSecrets:
        """The secrets of ``sealed``; ``KmsError`` on a wrong key, an altered or foreign file."""
        key = _check_storage_key(storage_key)
        if not isinstance(sealed, bytes | bytearray) or not bytes(sealed).startswith(_SEALED_PREFIX):
            raise KmsError("secrets-format", "not a sealed KMS secrets file (unknown format)")
        if len(sealed) != _SEALED_LENGTH:
            raise KmsError("secrets-format", "sealed KMS secrets have the wrong length (truncated?)")
        body = bytes(sealed)[len(_SEALED_PREFIX) :]
        nonce, ciphertext = body[:_NONCE_LENGTH], body[_NONCE_LENGTH:]
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, _SEAL_LABEL)
        except InvalidTag:
            raise KmsError(
                "secrets-unsealable", "the KMS secrets do not open: wrong storage key or altered file"
            ) from None
        return cls(
            ksak=int.from_bytes(plaintext[:_KSAK_LENGTH], "big"),
            z=int.from_bytes(plaintext[_KSAK_LENGTH:], "big"),
        )


# --- the KMS ------------------------------------------------------------------------------------


def _period_numbers(numbers: Iterable[int]) -> list[int]:
    """Period numbers, duplicates dropped, order kept."""
    out: list[int] = []
    for number in numbers:
        if isinstance(number, bool):
            raise KmsError("period-invalid", "a key period number is an integer, not a bool")
        try:
            value = operator.index(number)
        except TypeError:
            raise KmsError("period-invalid", "a key period number must be an integer") from None
        if not 0 <= value <= _MAX_UINT:
            raise KmsError("period-invalid", "a key period number is out of range")
        if value not in out:
            out.append(value)
    return out


class Kms:
    """One KMS: its secrets and its own (Root) certificate, which must match them.

    ``provision`` issues key sets for the UIDs of a user (RFC 6507 §5.1.1, RFC 6508 §6.1.1 with
    the identifier of 33.180 F.2.1).  Which user may ask is the service's decision, not this one.
    """

    def __init__(self, kms_secrets: KmsSecrets, certificate: KmsCertificate) -> None:
        if certificate.role != "Root":
            raise KmsError("role-unknown", "a KMS provisions under its own certificate, whose role is Root")
        if (
            kms_secrets.pub_auth_key() != certificate.pub_auth_key
            or kms_secrets.pub_enc_key() != certificate.pub_enc_key
        ):
            raise KmsError(
                "secrets-mismatch", "the KMS secrets do not match the public keys of the certificate"
            )
        self._secrets = kms_secrets
        self.certificate = certificate

    def __repr__(self) -> str:
        return f"Kms({self.certificate.kms_uri!r})"

    @classmethod
    def create(
        cls,
        kms_uri: str,
        *,
        issuer: str | None = None,
        cert_uri: str | None = None,
        user_key_period: int = DEFAULT_USER_KEY_PERIOD,
        user_key_offset: int = 0,
        validity_days: int = 3650,
        now: datetime.datetime | None = None,
        kms_secrets: KmsSecrets | None = None,
    ) -> Kms:
        """A new KMS: fresh secrets (unless given) and its Root certificate, valid from ``now``
        (default: the current time, seconds dropped) for ``validity_days`` days."""
        if isinstance(validity_days, bool) or not isinstance(validity_days, int) or validity_days < 1:
            raise KmsError("value-invalid", "validity_days must be a positive integer")
        start = _check_time("now", now) if now is not None else datetime.datetime.now(_UTC)
        start = start.replace(microsecond=0)
        chosen = kms_secrets if kms_secrets is not None else KmsSecrets.generate()
        certificate = KmsCertificate(
            kms_uri=kms_uri,
            cert_uri=cert_uri if cert_uri is not None else kms_uri,
            issuer=issuer if issuer is not None else kms_uri,
            valid_from=start,
            valid_to=start + datetime.timedelta(days=validity_days),
            user_key_period=user_key_period,
            user_key_offset=user_key_offset,
            pub_enc_key=chosen.pub_enc_key(),
            pub_auth_key=chosen.pub_auth_key(),
        )
        return cls(chosen, certificate)

    @property
    def secrets(self) -> KmsSecrets:
        return self._secrets

    def periods_around_now(self, clock: Callable[[], float] = time.time) -> tuple[int, int, int]:
        """(previous, current, next) key period numbers by ``clock`` (WA-CR-07)."""
        try:
            return self.certificate.key_period.around_now(clock)
        except uid.UidError as exc:
            raise KmsError("period-invalid", str(exc)) from None

    def provision(self, user_uri: str, period_numbers: Iterable[int]) -> list[KeySet]:
        """One key set per period for ``user_uri``: SSK and PVT (ECCSI, ID = the UID octets) and
        the RSK (SAKKE, identifier = the UID as an integer).  A period that begins when the
        certificate has expired is refused; earlier periods are not (a new KMS still serves the
        previous period of WA-CR-07)."""
        certificate = self.certificate
        _check_token("user URI", user_uri)
        numbers = _period_numbers(period_numbers)
        key_sets = []
        for number in numbers:
            start, end = _period_bounds(certificate.key_period, number)
            if start >= certificate.valid_to:
                raise KmsError(
                    "period-outside-certificate",
                    f"key period {number} begins after the KMS certificate expires",
                )
            try:
                user_id = uid.uid(user_uri, certificate.kms_uri, certificate.key_period, number)
            except uid.UidError as exc:
                raise KmsError("identifier-invalid", f"no UID for this user: {exc}") from None
            ssk, pvt = eccsi.issue_ssk(self._secrets.ksak, certificate.pub_auth_key, user_id)
            rsk = sakke.issue_rsk(self._secrets.z, int.from_bytes(user_id, "big"))
            assert pvt is not None and rsk is not None
            key_sets.append(
                KeySet(
                    kms_uri=certificate.kms_uri,
                    cert_uri=certificate.cert_uri,
                    issuer=certificate.issuer,
                    user_uri=user_uri,
                    user_id=user_id,
                    key_period_no=number,
                    valid_from=start,
                    valid_to=end,
                    ssk=ssk,
                    pvt=pvt,
                    rsk=rsk,
                )
            )
        return key_sets


# --- client side: validation on receipt and the key ring ---------------------------------------


def validate_key_set(
    key_set: KeySet, certificate: KmsCertificate, user_uri: str, *, period: int | None = None
) -> None:
    """Check a received key set before any use (spec/crypto.md §7, WA-CR-06).

    The key set must come from ``certificate``'s KMS and be for ``user_uri`` (and for key period
    ``period`` when given); its UID and validity must be those recomputed from ``user_uri``, the
    certificate and the period (33.180 F.2.1); the SSK must satisfy [SSK]G = KPAK + [HS]PVT
    (RFC 6507 §5.1.2) and the RSK ⟨[b]P + Z, K_b⟩ = g (RFC 6508 §6.1.2).  ``KmsError`` says which
    check failed.
    """
    if key_set.kms_uri != certificate.kms_uri:
        raise KmsError("kms-mismatch", "the key set was issued under another KMS URI than the certificate's")
    if key_set.user_uri != user_uri:
        raise KmsError("user-mismatch", "the key set is for another user")
    if period is not None and key_set.key_period_no != period:
        raise KmsError(
            "period-mismatch", f"the key set is for key period {key_set.key_period_no}, not {period}"
        )
    try:
        expected = uid.uid(user_uri, certificate.kms_uri, certificate.key_period, key_set.key_period_no)
    except uid.UidError as exc:
        raise KmsError("identifier-invalid", f"no UID for this user: {exc}") from None
    if key_set.user_id != expected:
        raise KmsError("user-id-mismatch", "UserID is not the UID of this user, KMS and key period")
    start, end = _period_bounds(certificate.key_period, key_set.key_period_no)
    if (key_set.valid_from, key_set.valid_to) != (start, end):
        raise KmsError("period-mismatch", "ValidFrom/ValidTo are not the bounds of the key period")
    if start >= certificate.valid_to:
        raise KmsError("period-outside-certificate", "the key period begins after the certificate expires")
    try:
        eccsi.validate_ssk(key_set.ssk, key_set.pvt, certificate.pub_auth_key, expected)
    except eccsi.EccsiError as exc:
        raise KmsError("ssk-invalid", f"the SSK/PVT pair does not verify ({exc.reason})") from None
    try:
        sakke.validate_rsk(key_set.rsk, int.from_bytes(expected, "big"), certificate.pub_enc_key)
    except sakke.SakkeError as exc:
        raise KmsError("rsk-invalid", f"the RSK does not verify ({exc.reason})") from None


class KeyRing:
    """The validated key sets of one user under one KMS certificate.

    ``add`` validates before it stores (``validate_key_set``); ``prune`` keeps the previous,
    current and next key periods only (WA-CR-07, RFC 6509 §3.3); ``missing`` says which of
    those to fetch.  ``hs`` gives the ECCSI HS to sign with (``eccsi.sign(..., hs=...)``).
    """

    def __init__(
        self, certificate: KmsCertificate, user_uri: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.certificate = certificate
        self.user_uri = _check_token("user URI", user_uri)
        self._clock = clock
        self._sets: dict[int, tuple[KeySet, bytes]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def __repr__(self) -> str:
        return f"KeyRing({self.user_uri!r}, periods={self.periods})"

    @property
    def periods(self) -> tuple[int, ...]:
        return tuple(sorted(self._sets))

    def wanted(self) -> tuple[int, int, int]:
        """(previous, current, next) key period numbers now."""
        try:
            return self.certificate.key_period.around_now(self._clock)
        except uid.UidError as exc:
            raise KmsError("period-invalid", str(exc)) from None

    def add(self, key_set: KeySet) -> None:
        """Validate ``key_set`` and hold it (replacing any key set of the same period)."""
        validate_key_set(key_set, self.certificate, self.user_uri)
        hs = eccsi.compute_hs(self.certificate.pub_auth_key, key_set.user_id, key_set.pvt)
        self._sets[key_set.key_period_no] = (key_set, hs)

    def get(self, number: int) -> KeySet:
        try:
            return self._sets[number][0]
        except KeyError:
            raise KmsError("period-missing", f"no key set held for key period {number}") from None

    def hs(self, number: int) -> bytes:
        """HS = hash(G || KPAK || UID || PVT) of the key set of period ``number``."""
        self.get(number)
        return self._sets[number][1]

    def current(self) -> KeySet:
        """The key set of the current key period."""
        return self.get(self.wanted()[1])

    def missing(self) -> list[int]:
        """The previous, current and next periods that have no key set yet."""
        return [number for number in self.wanted() if number not in self._sets]

    def prune(self) -> list[int]:
        """Drop key sets outside the previous, current and next periods; returns the dropped ones."""
        keep = set(self.wanted())
        dropped = [number for number in self._sets if number not in keep]
        for number in dropped:
            del self._sets[number]
        return sorted(dropped)
