"""Who may connect over MQTT: the CONNECT as the vendor's device SDK sends it, checked against
the registered devices, their secrets, fingerprints and the verified device CAs, on the farm
clock. No I/O here: the rules take plain values and answer a refusal case or the device.

The SDK (``iot_device_sdk_python``, ``mqtt_connection.py`` and ``utils/iot_util.py``):

- client id ``{device_id}_0_{psw_sig_type}_{YYYYMMDDHH}`` (UTC hour; ``_1_`` asks the platform
  to check the hour against its clock, ``_0_`` not to);
- user name the device id;
- password ``hmac.new(key=timestamp, msg=secret, sha256).hexdigest()`` for SECRET devices, none
  for certificate devices;
- keep-alive 30-1200 s (the platform's documented range).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ... import pki
from .common import load_certificate

if TYPE_CHECKING:
    from .device_cas import DeviceCA
    from .devices import Device

# Each way a CONNECT is refused; options.MqttConnack gives each its CONNACK code.
Refusal = Literal["keep_alive", "bad_client_id", "unknown_device", "bad_password", "clock_skew",
                  "frozen", "insecure", "no_certificate", "unknown_ca", "unverified_ca",
                  "expired_certificate", "fingerprint"]

CLIENT_ID = re.compile(r"(?P<device>[A-Za-z0-9_-]{1,128})_0_(?P<sig>[01])_(?P<hour>\d{10})")
KEEP_ALIVE = (30, 1200)  # seconds; spec: "outside this range the server rejects the CONNECT"


@dataclass(frozen=True)
class ClientId:
    device_id: str
    check_time: bool
    timestamp: str  # YYYYMMDDHH as sent: the HMAC key


def parse_client_id(client_id: str) -> ClientId | None:
    m = CLIENT_ID.fullmatch(client_id)
    if m is None:
        return None
    return ClientId(m["device"], m["sig"] == "1", m["hour"])


def hour_start(timestamp: str) -> float | None:
    """The UTC hour ``YYYYMMDDHH`` names, as a POSIX time (None when it is no real hour)."""
    try:
        moment = dt.datetime.strptime(timestamp, "%Y%m%d%H").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return moment.timestamp()


def timestamp_fits(timestamp: str, now: float, tolerance: float) -> bool:
    """A device clock in hour ``timestamp`` agrees with ``now`` when ``now`` lies in that hour,
    widened by ``tolerance`` seconds either side."""
    start = hour_start(timestamp)
    return start is not None and start - tolerance <= now < start + 3600 + tolerance


# The hour of the ready file's ready-to-paste logins: the vendor docs' sample client id
# (``D39564861q3gDa_0_0_2018072417``). With signature type 0 the platform does not compare the
# hour with its clock (the device SDK's ``psw_sig_type``: "0" means do not check), so one fixed
# login works on any day.
LOGIN_HOUR = "2018072417"


def password_for(secret: str, timestamp: str) -> str:
    """The SDK's ``sha256_mac(secret, timestamp)``."""
    return hmac.new(timestamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


def password_matches(password: bytes | None, device: Device, timestamp: str) -> bool:
    if password is None:
        return False
    try:
        given = password.decode("ascii")
    except UnicodeDecodeError:
        return False
    return any(secret is not None and hmac.compare_digest(given, password_for(secret, timestamp))
               for secret in (device.secret, device.secondary_secret))


def fingerprints(der: bytes) -> tuple[str, str]:
    """(SHA-1, SHA-256) of a certificate, lower-case hex: what ``fingerprint`` compares with."""
    return hashlib.sha1(der).hexdigest(), hashlib.sha256(der).hexdigest()  # noqa: S324


def fingerprint_matches(device: Device, der: bytes) -> bool:
    """Case-insensitively, the SHA-1 or SHA-256 of ``der`` against the primary or secondary
    fingerprint (40 hex digits are SHA-1, 64 SHA-256)."""
    sha1, sha256 = fingerprints(der)
    for stored in (device.fingerprint, device.secondary_fingerprint):
        if stored is not None and stored.lower() in (sha1, sha256):
            return True
    return False


class CaCache:
    """The parsed certificates of the member's device CAs, parsed once per record."""

    def __init__(self) -> None:
        self._parsed: dict[int, tuple[DeviceCA, x509.Certificate]] = {}

    def certificate(self, record: DeviceCA) -> x509.Certificate:
        hit = self._parsed.get(id(record))
        if hit is not None and hit[0] is record:
            return hit[1]
        cert, _ = load_certificate(record.content, allow_der=True)
        if len(self._parsed) > 4096:
            self._parsed.clear()
        self._parsed[id(record)] = (record, cert)
        return cert

    def trust_pem(self, records: list[DeviceCA]) -> str:
        """Every device CA as PEM: the TLS listener's trust store (whether verified or not, so
        that an unverified CA's device is refused with a CONNACK, not a handshake alert)."""
        return "".join(self.certificate(r).public_bytes(Encoding.PEM).decode() for r in records)


def _valid_at(cert: x509.Certificate, now: float) -> bool:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


def certificate_refusal(der: bytes, device: Device, cas: list[DeviceCA], cache: CaCache,
                        now: float) -> Refusal | None:
    """Why the client certificate ``der`` does not let ``device`` in (None: it does). The TLS
    handshake has checked its chain to some device CA of the member, without dates."""
    cert = x509.load_der_x509_certificate(der)
    issuer = next((r for r in cas if r.project_id == device.project_id
                   and pki.verify_signed_by(cert, cache.certificate(r))), None)
    if issuer is None:
        return "unknown_ca"  # a CA of another project (or deleted since the handshake)
    if not issuer.status:
        return "unverified_ca"
    if not _valid_at(cert, now) or not _valid_at(cache.certificate(issuer), now):
        return "expired_certificate"
    if (device.fingerprint or device.secondary_fingerprint) and not fingerprint_matches(
            device, der):
        return "fingerprint"
    return None
