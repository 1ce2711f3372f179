"""The farm's control plane: an HTTP API for tests and people, never exposed by a device.

Routes live under ``/v1``, one module per concern (members, clock...); the server is
``control/server.py`` (``ControlPlane``). It binds to 127.0.0.1 unless the scenario says
otherwise, and can require a bearer token. Importing this package loads none of it: a module
that needs the server imports ``control.server``.
"""
