"""A deliberately small device kind for testing the farm machinery itself (not an emulator)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from emulators.core.httpserver import HttpEmulator
from emulators.core.member import KindOptions


class CounterOptions(KindOptions):
    start: int = 0


class Counter(HttpEmulator):
    """GET / reads a counter, POST / increments it and saves it to flash."""

    kind = "tests.kinds:Counter"
    Options = CounterOptions

    def initial_state(self) -> dict[str, Any]:
        return {"value": self.options.start}  # type: ignore[attr-defined]

    def load_state(self, data: dict[str, Any]) -> None:
        self.value = int(data["value"])

    def dump_state(self) -> dict[str, Any]:
        return {"value": self.value}

    def build_app(self) -> web.Application:
        app = self.new_app()

        async def read(request: web.Request) -> web.Response:
            return web.Response(text=str(self.value))

        async def bump(request: web.Request) -> web.Response:
            self.value += 1
            await self.save()
            return web.Response(text=str(self.value))

        async def slow(request: web.Request) -> web.Response:
            # A request still in flight when the farm is told to stop.
            await asyncio.sleep(float(request.query.get("seconds", "1")))
            return web.Response(text="finished")

        app.router.add_get("/slow", slow)
        app.router.add_get("/", read)
        app.router.add_post("/", bump)
        return app
