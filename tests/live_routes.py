"""Which routes of the backend API a live server has: tests of routes still to come skip until they land."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
import pytest

from .conftest import SERVICE_KEY, base_settings, start_server

# A request each, answered 404 only when the route does not exist (any other answer means it does).
PROBES: dict[str, tuple[str, str, Any]] = {
    "/api/batch": ("POST", "/api/batch", {}),
    "/api/presence": ("GET", "/api/presence/room:probe", None),
    "/api/rooms": ("GET", "/api/rooms", None),
    "/api/disconnect": ("POST", "/api/disconnect", {}),
    "/api/unsubscribe": ("POST", "/api/unsubscribe", {}),
}


async def _probe() -> frozenset[str]:
    server = await start_server(base_settings())
    missing = set()
    try:
        headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for route, (method, path, body) in PROBES.items():
                async with http.request(method, server.url + path, json=body) as resp:
                    if resp.status == 404:
                        missing.add(route)
    finally:
        await server.runner.cleanup()
    return frozenset(missing)


@functools.cache
def missing_routes() -> frozenset[str]:
    """The routes of PROBES that a freshly started server answers 404 (asked once per test session)."""
    return asyncio.run(_probe())


def needs_route(*routes: str) -> pytest.MarkDecorator:
    """Skip while a live server answers 404 on one of `routes`; runs by itself once they exist."""
    absent = sorted(set(routes) & missing_routes())
    return pytest.mark.skipif(bool(absent), reason=f"not on this server yet: {', '.join(absent)}")
