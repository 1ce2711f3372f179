"""Hosting an emulator as an aiohttp application: one object owns its app, runner and sites."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from .aiohttp_internals import HookedRunner, bound_address, dress_requests
from .faults import TLS_FAULTS
from .member import Member
from .observe import MEMBER, Handler
from .quirks.format import Profile
from .replyheaders import ReplyHeaders, WebServerOptions
from .tls import TlsSite, fault_contexts

if TYPE_CHECKING:
    from .quirks.replay import QuirkReplay

# How long shutdown waits for requests in flight before closing their connections.
SHUTDOWN_GRACE = 5.0


class ObservedRunner(HookedRunner):
    """An AppRunner whose server calls ``wrap(handler)`` in place of the application's own
    handler: the farm's observer (journal, faults) sees every request the application does,
    404s included, without being a middleware layer (each costs every request two coroutine
    frames, and the first one a third). Its requests are ``DressedRequest`` objects: ``dress``
    sees every reply before it is written."""

    def __init__(self, app: web.Application, wrap: Callable[[Handler], Handler] | None,
                 dress: Callable[[web.StreamResponse], None], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._wrap = wrap
        self._dress = dress

    def adjust_server(self, server: web.Server) -> None:
        if self._wrap is not None:
            server.request_handler = self._wrap(server.request_handler)  # type: ignore[assignment]
        dress_requests(server, self._dress)


class HttpEmulator(Member):
    """An emulator whose device speaks HTTP: subclasses fill ``build_app``."""

    client_max_size: ClassVar[int] = 2 * 1024 * 1024
    # A connection that has not completed a request (headers) within this many seconds, or
    # sits idle that long between requests, is closed: a byte-a-second client cannot hold it.
    idle_timeout: ClassVar[float] = 15.0
    # Handling one request (reading a slow body included) may take at most this long.
    request_deadline: ClassVar[float] = 120.0
    # True: a body declared over client_max_size is answered with ``body_too_large`` before
    # it is read, and the connection closed. False: the kind's handlers decide (aiohttp
    # refuses such a body when a handler reads it).
    refuses_large_bodies: ClassVar[bool] = False
    # The replay of the member's quirk profile (its ``quirks`` option), made at each start.
    quirks: QuirkReplay | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.sites: dict[str, web.BaseSite] = {}
        self.bound: dict[str, tuple[str, int]] = {}
        self._fault_contexts: dict[str, ssl.SSLContext] | None = None
        self._reply_headers = ReplyHeaders()

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def new_app(self, **kwargs: Any) -> web.Application:
        kwargs.setdefault("client_max_size", self.client_max_size)
        app = web.Application(**kwargs)
        app[MEMBER] = self
        return app

    def reply_headers(self) -> ReplyHeaders:
        """Hook: the header lines this member's web server adds to every reply: its options'
        (a kind whose Options are ``WebServerOptions``), or none. Read once, at start."""
        if isinstance(self.options, WebServerOptions):
            return self.options.web_server()
        return ReplyHeaders()

    def dress_reply(self, response: web.StreamResponse) -> None:
        """The last look at every reply before its header is written (kinds that write their
        header themselves override it)."""
        self._reply_headers.apply(response.headers, self.clock)

    def _context_for(self, normal: ssl.SSLContext) -> ssl.SSLContext:
        """The TLS identity for the next connection: the member's own, unless a tls_* fault
        rule fires, which serves a farm-CA certificate that expired or names another host."""
        faults = self.ctx.faults
        if not faults.rules:
            return normal
        rule = faults.check(self.name, self.kind, "https", types=TLS_FAULTS,
                            group=self.spec.group)
        if rule is None:
            return normal
        if self._fault_contexts is None:
            self._fault_contexts = fault_contexts(self.ctx.ca, self.host)
        return self._fault_contexts[rule.fault]

    def command_of(self, request: web.Request) -> str | None:
        """The device command a request carries, for fault rules' ``command`` match."""
        return request.query.get("cmd") or request.query.get("action")

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """This device's own error reply carrying ``message`` (kinds override it); used for
        injected vendor errors and for failures no handler mapped."""
        return web.Response(status=status or 500, text=message)

    def body_too_large(self, request: web.Request) -> web.StreamResponse:
        """The reply to a body declared over ``client_max_size`` (``refuses_large_bodies``)."""
        return web.Response(status=413, text="413: Request Entity Too Large")

    def quirk_profile(self) -> Profile | None:
        """The quirk profile the member replays: its kind's ``quirks`` option, if it has one."""
        return getattr(self.options, "quirks", None)

    async def quirk_credentials(self, request: web.Request) -> str | None:
        """Hook: how this member judges a request's credentials, for a quirk profile's
        exchanges that say (``credentials:``): ``right`` (its own check would let the request
        in), ``wrong`` (credentials given, refused) or ``none`` (none given). A kind without
        a signed API answers None, which no exchange's ``credentials`` matches."""
        return None

    async def reset(self) -> None:
        await super().reset()
        if self.quirks is not None:
            self.quirks.reset()

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        profile = self.quirk_profile()
        if profile is not None:
            doc["quirks"] = profile.describe()
        return doc

    def _wrapper(self) -> Callable[[Handler], Handler] | None:
        """What the server runs in place of the application's handler: the farm's observer
        around it and, for a member with a quirk profile, the replay between the two (a member
        without one runs no code of it)."""
        observe = self.ctx.http_observer
        profile = self.quirk_profile()
        self.quirks = None
        if profile is None:
            return None if observe is None else functools.partial(observe, self)
        from .quirks.replay import QuirkReplay

        quirks = self.quirks = QuirkReplay(profile, self)
        if observe is None:
            return quirks.wrap
        return lambda handler: observe(self, quirks.wrap(handler))

    async def start(self) -> None:
        self.restore_saved()
        self.app = self.build_app()
        self._reply_headers = self.reply_headers()
        self.runner = ObservedRunner(
            self.app, self._wrapper(),
            self.dress_reply, access_log=None, shutdown_timeout=SHUTDOWN_GRACE,
            handle_signals=False, keepalive_timeout=self.idle_timeout,
        )
        await self.runner.setup()
        await self.listen("http", self.host, self.port)
        self.port = self.bound["http"][1]
        await self.after_start()

    async def after_start(self) -> None:
        """Hook: start further listeners (HTTPS) and background tasks."""

    async def listen(
        self, label: str, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        assert self.runner is not None
        site: web.BaseSite
        if ssl_context is None:
            site = web.TCPSite(self.runner, host, port, reuse_address=True, backlog=512)
        else:
            site = TlsSite(self.runner, host, port, lambda: self._context_for(ssl_context))
        await site.start()
        bound = bound_address(site)
        self.sites[label] = site
        self.bound[label] = bound
        return bound

    async def unlisten(self, label: str) -> None:
        site = self.sites.pop(label, None)
        self.bound.pop(label, None)
        if site is not None:
            await site.stop()

    async def stop(self) -> None:
        await self.before_stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        self.sites.clear()
        await self.ctx.store.flush(self.name)

    async def before_stop(self) -> None:
        """Hook: cancel background tasks before the listeners close."""

    def urls(self) -> dict[str, str]:
        urls = {}
        for label, (host, port) in self.bound.items():
            scheme = "https" if label.startswith("https") else "http"
            urls[label] = f"{scheme}://{host}:{port}"
        return urls
