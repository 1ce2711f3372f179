"""The farm's local certificate authority, for servers that need a certificate a client can
verify (FTPS, HTTPS). Made on first use, kept in the state directory, published in the ready
file so a verifying client can trust it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import pki
from .state import StateStore

STATE_NAME = "_farm-ca"


class FarmCA(pki.StoredCA):
    @classmethod
    def load_or_create(cls, store: StateStore) -> FarmCA:
        saved = store.load(STATE_NAME)
        if saved is not None:
            return cls(*cls.parts(saved))
        key = pki.ec_key()
        cert = pki.make_ca(pki.name(CN="Emulator Farm Local CA", O="emulators"), key, days=3650)
        ca = cls(cert, key)
        store.save_now(STATE_NAME, ca.to_dict())
        return ca

    def fault_identities(self, hosts: tuple[str, ...]) -> dict[str, tuple[str, str]]:
        """(chain PEM, key PEM) of what the tls_* fault rules serve: one for another name,
        one expired by the real clock (that is what clients check)."""
        wrong = self.issue_server("wrong-name.invalid", dns_names=("wrong-name.invalid",),
                                  ip_addresses=())
        key = pki.ec_key()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
        expired = pki.issue(key.public_key(), pki.name(CN=hosts[0]), self.cert, self.key,
                            not_before=start, days=30, dns_names=("localhost",),
                            ip_addresses=hosts, server=True)
        return {"tls_wrong_name": wrong,
                "tls_expired": (pki.cert_pem(expired) + self.pem, pki.key_pem(key))}

    def issue_server(self, common_name: str, *, dns_names: tuple[str, ...] = ("localhost",),
                     ip_addresses: tuple[str, ...] = ("127.0.0.1",), days: int = 825,
                     now: Any = None) -> tuple[str, str]:
        """A server certificate (chain PEM) and its key PEM, signed by this CA."""
        key = pki.ec_key()
        cert = pki.issue(key.public_key(), pki.name(CN=common_name), self.cert, self.key,
                         days=days, now=now, dns_names=dns_names, ip_addresses=ip_addresses,
                         server=True)
        return pki.cert_pem(cert) + self.pem, pki.key_pem(key)
