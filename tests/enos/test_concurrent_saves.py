"""Concurrent applies share saves of the certificate book: each call still answers only once
its certificate is saved, so a restart on the same state directory lists every one."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp

from .conftest import CERTS, ORG, ec_key, make_csr

CALLS = 12


async def _apply_together(url: str) -> list[str]:
    query = urllib.parse.urlencode({"action": "apply", "orgId": ORG, "assetId": "assetA"})
    async with aiohttp.ClientSession() as session:

        async def apply(n: int) -> str:
            body = {"csr": make_csr(ec_key("secp256r1", 100 + n), f"together-{n}"),
                    "issueAuthority": "ECC"}
            async with session.post(f"{url}{CERTS}?{query}", json=body,
                                    headers={"apim-accesstoken": "sdk-token"}) as resp:
                doc = await resp.json(content_type=None)
            assert doc["code"] == 0, doc
            return str(doc["data"]["certSN"])

        return await asyncio.gather(*(apply(n) for n in range(CALLS)))


def test_concurrent_applies_are_all_saved(start_enos, tmp_path) -> None:
    first = start_enos(state_dir=tmp_path)
    issued = asyncio.run(_apply_together(first.url))
    assert len(set(issued)) == CALLS
    first.handle._farm.stop()

    second = start_enos(state_dir=tmp_path)
    listed = {c["certSN"] for c in second.sdk("list")["data"]}
    assert set(issued) <= listed
