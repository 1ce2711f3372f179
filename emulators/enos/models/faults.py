"""Injected 99500 internal errors, so clients can exercise their retry paths."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import INTERNAL_ERRORS, InternalError


@dataclass
class Faults:
    """The next ``remaining`` calls fail; after that each fails with ``probability``."""

    remaining: int = 0
    probability: float = 0.0
    service: str = "certificate"
    rng: random.Random = field(default_factory=random.Random)

    def check(self) -> None:
        """Raise the 99500 of ``service`` when this call is one that should fail."""
        if self.remaining > 0:
            self.remaining -= 1
            raise self.error()
        if self.probability and self.rng.random() < self.probability:
            raise self.error()

    def error(self) -> InternalError:
        return INTERNAL_ERRORS[self.service]()

    def dump(self) -> dict[str, Any]:
        return {"remaining": self.remaining, "probability": self.probability,
                "service": self.service}
