"""Injected failures for clients' retry paths: the 99500 internal errors, the certificate
service failing behind the Connection Service ("ca"), or the gateway's token service (1005)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from ..exceptions import (
    INTERNAL_ERRORS,
    CallCaError,
    GatewayInternal,
    QueryFailed,
    RenewFailed,
    RevokeFailed,
)
from .tokens import TOKEN_SERVICE

Service = Literal["certificate", "product", "iothub", "ca", "gateway"]
Target = Literal["apply", "renew", "revoke", "list", "token"]

_UNAVAILABLE = ("The certificate service is unavailable", "injected by the scenario")


@dataclass
class Faults:
    """The next ``remaining`` calls fail; after that each fails with ``probability``."""

    remaining: int = 0
    probability: float = 0.0
    service: Service = "certificate"
    rng: random.Random = field(default_factory=random.Random)

    def check(self, target: Target) -> None:
        """Raise the configured failure when this call is one that should fail."""
        if (target == "token") != (self.service == "gateway"):
            return  # token faults hit only the token service, the others only certificates
        if self.remaining > 0:
            self.remaining -= 1
            raise self.error(target)
        if self.probability and self.rng.random() < self.probability:
            raise self.error(target)

    def error(self, target: Target) -> Exception:
        if self.service == "gateway":
            return GatewayInternal(TOKEN_SERVICE)
        if self.service == "ca":
            if target == "list":
                return QueryFailed(*_UNAVAILABLE)
            if target == "renew":
                return RenewFailed(*_UNAVAILABLE)
            if target == "revoke":
                return RevokeFailed(*_UNAVAILABLE)
            return CallCaError(50000, *_UNAVAILABLE)
        return INTERNAL_ERRORS[self.service]()

    def dump(self) -> dict[str, Any]:
        return {"remaining": self.remaining, "probability": self.probability,
                "service": self.service}
