"""Who may connect over MQTT: the login as the EnOS device SDK (``enos-mqtt-sdk-python``)
sends it, checked against the registry, the device and product secrets and the certificate
book, on the farm clock. No I/O here.

The SDK (``enos/core/internal/Profile.py``, ``SecureMode.py``, ``util/SignUtil.py``):

- client id ``{clientId}|securemode={2|3},signmethod={method},timestamp={ts}|``; the inner
  client id is the device key; securemode 2 signs with the device secret, 3 (dynamic
  activation) with the product secret;
- user name ``{deviceKey}&{productKey}``;
- password ``sha256("clientId"+id+"deviceKey"+dk+"productKey"+pk+"timestamp"+ts + secret)``:
  the keys sorted, plain SHA-256 although ``signmethod`` says ``hmacsha256``, lower-case hex
  where the docs say upper-case, and ``ts`` is ``str(time.time() * 1000)``, a float.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from ... import pki

Refusal = Literal["bad_client_id", "unknown_device", "bad_signature", "not_activated",
                  "already_activated", "no_product_secret", "insecure", "no_certificate",
                  "certificate", "client_id_in_use"]

CLIENT_ID = re.compile(r"(?P<client>[^|]{1,64})\|(?P<options>[^|]*)\|")
SECURE_MODES = (2, 3)
# Accepted ``signmethod`` values: the docs' ``sha256`` and the SDK's ``hmacsha256`` (which
# it signs with plain SHA-256 all the same).
SIGN_METHODS = ("sha256", "hmacsha256")


@dataclass(frozen=True)
class Login:
    client_id: str  # the inner one (the device key, as the SDK sends it)
    secure_mode: int
    sign_method: str
    timestamp: str  # as sent: part of what is signed, never parsed


def parse_client_id(raw: str) -> Login | None:
    m = CLIENT_ID.fullmatch(raw)
    if m is None:
        return None
    options: dict[str, str] = {}
    for part in m["options"].split(","):
        key, sep, value = part.partition("=")
        if not sep or key in options:
            return None
        options[key] = value
    try:
        mode = int(options.get("securemode", ""))
    except ValueError:
        return None
    method = options.get("signmethod", "").lower()
    timestamp = options.get("timestamp", "")
    if mode not in SECURE_MODES or method not in SIGN_METHODS or not timestamp:
        return None
    return Login(m["client"], mode, method, timestamp)


def parse_username(raw: str | None) -> tuple[str, str] | None:
    """(device key, product key) of ``{deviceKey}&{productKey}``."""
    if raw is None or raw.count("&") != 1:
        return None
    device_key, product_key = raw.split("&")
    return (device_key, product_key) if device_key and product_key else None


# The timestamp of the ready file's ready-to-paste logins: signed as sent and never compared
# with a clock, so one fixed login works on any day.
LOGIN_TIMESTAMP = "1700000000000"


def ready_login(device_key: str, product_key: str, secret: str) -> dict[str, str]:
    """A securemode-2 MQTT login of the device, as the SDK would send it (client id, user name,
    password), with ``LOGIN_TIMESTAMP``."""
    login = Login(device_key, 2, "sha256", LOGIN_TIMESTAMP)
    return {"client_id": f"{device_key}|securemode=2,signmethod=sha256,"
                         f"timestamp={LOGIN_TIMESTAMP}|",
            "username": f"{device_key}&{product_key}",
            "password": signature(login, device_key, product_key, secret)}


def signature(login: Login, device_key: str, product_key: str, secret: str) -> str:
    content = (f"clientId{login.client_id}deviceKey{device_key}productKey{product_key}"
               f"timestamp{login.timestamp}{secret}")
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def signature_matches(password: bytes | None, login: Login, device_key: str,
                      product_key: str, secret: str) -> bool:
    """Case-insensitively: the SDK sends lower-case hex, the docs say upper-case."""
    if password is None:
        return False
    try:
        given = password.decode("ascii").lower()
    except UnicodeDecodeError:
        return False
    return hmac.compare_digest(given, signature(login, device_key, product_key, secret))


def certificate_serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def valid_at(cert_pem: str, now: float) -> bool:
    cert = pki.load_cert(cert_pem)
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc
