"""One ONVIF operation call as the services see it, and the table form every service module
exports (``OPERATIONS``): the operation's local name -> its handler and access class.

The dispatcher (service.py) parses the request (soap.py), authenticates the caller, checks
the operation's access class against the caller's level and the camera's quirks, then calls
the handler; a handler returns the reply's body XML (or a ``Reply`` with a header too) and
raises ``soap.SoapError`` for a fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from .. import soap
from ..facts import UserLevel, VideoUser

if TYPE_CHECKING:
    from ..wing import VideoWing

# ONVIF Core "Access classes": what each user level may call. PRE_AUTH needs no credentials
# at all (GetSystemDateAndTime among them: clients read the camera's clock before signing).
Access = Literal["pre_auth", "read_system", "read_system_secret", "read_media", "actuate",
                 "write_system", "unrecoverable"]
ALLOWED: dict[UserLevel, frozenset[str]] = {
    "User": frozenset({"pre_auth", "read_system", "read_media"}),
    "Operator": frozenset({"pre_auth", "read_system", "read_media", "actuate"}),
    "Administrator": frozenset({"pre_auth", "read_system", "read_system_secret", "read_media",
                                "actuate", "write_system", "unrecoverable"}),
}


@dataclass(frozen=True)
class Reply:
    body: str
    header: str = ""


@dataclass
class Call:
    wing: VideoWing
    request: web.Request
    message: soap.Message
    user: VideoUser | None  # None: an anonymous call of a pre_auth operation
    service: str  # device, media, media2, events, imaging, subscription
    target: str | None = None  # the subscription id of a subscription manager's path

    @property
    def host(self) -> str | None:
        """The host the client addressed the camera by: URLs in replies use it."""
        return self.request.url.host

    @property
    def body(self) -> soap.Element:
        return self.message.body


Handler = Callable[[Call], Awaitable["str | Reply"]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    access: Access
