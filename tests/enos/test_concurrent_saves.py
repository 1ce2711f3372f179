"""Concurrent applies share saves of the certificate book: each call still answers only once
its certificate is saved, so a restart on the same state directory lists every one. Saves
join kept encodings of the certificates: the file is still exactly the state, encoded."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp

from emulators.core.state import encode_state

from .conftest import CERTS, ORG, ec_key, make_csr, rsa_key

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


def test_the_saved_file_is_the_state_encoded(start_enos, tmp_path) -> None:
    enos = start_enos(state_dir=tmp_path, renew_old_certificate="revoke")
    path = tmp_path / "enos.json"

    def saved_is_dumped() -> bool:
        dumped = enos.handle.call(lambda m: encode_state(m.dump_state()))
        return path.read_bytes() == dumped

    first = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 60), "saved-1")})["data"]["certSN"]
    assert saved_is_dumped()
    second = enos.sdk("apply", {"csr": make_csr(ec_key("secp256r1", 60), "saved-2"),
                                "issueAuthority": "ECC"})["data"]["certSN"]
    assert enos.sdk("renew", {"certSn": first})["code"] == 0  # revokes the first
    assert saved_is_dumped()
    assert enos.sdk("revoke", {"certSn": second, "reason": 1})["code"] == 0
    enos.token()
    assert saved_is_dumped()
    enos.handle.reset()
    assert saved_is_dumped()
