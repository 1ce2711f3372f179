"""Which class runs which scenario ``kind``: one line per emulated system or server.

Modules are imported on first use, so a farm pays only for the kinds it runs. A scenario may
also name a class of its own as ``kind: "package.module:Class"``.
"""

from __future__ import annotations

import importlib

from .core.member import Member

KINDS: dict[str, str] = {
    "acti-camera": "emulators.acti.emulator:ActiCamera",
    "instar-camera": "emulators.instar.emulator:InstarCamera",
    "enos": "emulators.enos.emulator:EnosService",
    "iotda": "emulators.iotda.emulator:IotdaService",
    "iotda-device": "emulators.iotda_device.emulator:IotdaDevice",
    "ftp": "emulators.servers.ftp.member:FtpServer",
    "sftp": "emulators.servers.sftp:SftpServer",
}


class UnknownKind(LookupError):
    pass


def resolve(kind: str) -> type[Member]:
    target = KINDS.get(kind)
    if target is None:
        if ":" not in kind:
            raise UnknownKind(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        target = kind
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownKind(f"kind {kind!r} is not available: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Member)):
        raise UnknownKind(f"kind {kind!r} does not name a Member class")
    return cls
