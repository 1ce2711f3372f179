"""The farm's control plane: an HTTP API for tests and people, never exposed by a device.

Routes live under ``/v1``, one module per concern (members, clock...). It binds to
127.0.0.1 unless the scenario says otherwise, and can require a bearer token.
"""

from .server import ControlPlane

__all__ = ["ControlPlane"]
