"""The FTP server's scenario keys."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ... import pki
from ..common import ServerOptions


class FtpOptions(ServerOptions):
    tls: Literal["none", "explicit"] = "none"
    # farm-ca: issued by the farm CA for 127.0.0.1/localhost (verifiable); self-signed and
    # wrong-name reproduce "server cannot be verified"; supplied: cert_pem/key_pem below.
    certificate: Literal["farm-ca", "self-signed", "wrong-name", "supplied"] = "farm-ca"
    cert_pem: str | None = None
    key_pem: str | None = None
    tls_control_required: bool = False  # refuse USER/PASS before AUTH TLS
    tls_data_required: bool = False  # refuse PASV/PORT before PROT P
    passive_ports: tuple[int, int] | None = None
    # The address PASV replies announce, when clients reach the server through NAT (a
    # container's published ports): the host's address instead of the container's.
    masquerade_address: str | None = None
    banner: str = "FTP server ready."  # no software name or version (hardening)
    failed_login_delay: float = Field(default=1.0, ge=0, le=30)
    idle_timeout: int = Field(default=300, ge=1)
    max_connections: int = Field(default=256, ge=1)

    @field_validator("passive_ports")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1024 <= value[0] <= value[1] <= 65535:
            raise ValueError("passive_ports is [low, high] with 1024 <= low <= high <= 65535")
        return value

    @model_validator(mode="after")
    def _supplied(self) -> FtpOptions:
        if not self.users:
            raise ValueError("an FTP server needs at least one user")
        for user in self.users:
            if user.password is None:
                raise ValueError(f"FTP user {user.name!r} needs a password")
        if self.certificate == "supplied":
            if not (self.cert_pem and self.key_pem):
                raise ValueError("certificate 'supplied' needs cert_pem and key_pem")
            try:
                cert = pki.load_cert(self.cert_pem)
                key = pki.load_key(self.key_pem)
            except pki.PkiError as exc:
                raise ValueError(str(exc)) from None
            if not pki.public_key_matches(cert, key):
                raise ValueError("cert_pem and key_pem are not a pair")
        elif self.cert_pem or self.key_pem:
            raise ValueError("cert_pem/key_pem are only read with certificate: supplied")
        return self
