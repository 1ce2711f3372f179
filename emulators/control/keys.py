"""Typed application keys of the control plane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..farm import Farm

FARM: web.AppKey[Farm] = web.AppKey("farm")
