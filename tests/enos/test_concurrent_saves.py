"""Concurrent applies share saves of the certificate book: each call still answers only once
its certificate is saved, so a restart on the same state directory lists every one. Saves
join kept encodings of the certificates: the file is still exactly the state, encoded."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp

from emulators.core.state import encode_state
from emulators.enos.models.certificates import CertificateBook, CertRecord

from .clients import CERTS, ORG, ec_key, make_csr, rsa_key

CALLS = 12


async def _apply_together(url: str, token: str) -> list[str]:
    query = urllib.parse.urlencode({"action": "apply", "orgId": ORG, "assetId": "assetA"})
    async with aiohttp.ClientSession() as session:

        async def apply(n: int) -> str:
            body = {"csr": make_csr(ec_key("secp256r1", 100 + n), f"together-{n}"),
                    "issueAuthority": "ECC"}
            async with session.post(f"{url}{CERTS}?{query}", json=body,
                                    headers={"apim-accesstoken": token}) as resp:
                doc = await resp.json(content_type=None)
            assert doc["code"] == 0, doc
            return str(doc["data"]["certSN"])

        return await asyncio.gather(*(apply(n) for n in range(CALLS)))


def test_concurrent_applies_are_all_saved(start_enos, tmp_path) -> None:
    first = start_enos(state_dir=tmp_path)
    issued = asyncio.run(_apply_together(first.url, first.sdk_token()))
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


def test_the_books_kept_encoding_follows_every_change() -> None:
    """Out-of-order adds (signatures finishing out of turn), revocations, a reset."""
    book = CertificateBook()

    def record(sn: int) -> CertRecord:
        return CertRecord(cert_sn=sn, org_id=ORG, asset_id=f"asset{sn}", cert="PEM\n",
                          issue_authority="RSA", sign_date=1, not_before=1, not_after=2,
                          subject=f"CN=c{sn}", issuer="CN=EnOS CA", cn=f"c{sn}", key_id=f"k{sn}")

    def kept_is_encoded() -> bool:
        return b"".join(book.encoded.parts()) == encode_state(book.to_list())

    assert kept_is_encoded()
    for sn in (5, 6, 3, 9, 7):
        book.add(record(sn))
        assert kept_is_encoded()
    book.mark_revoked(book.records[6], 10, 1, None)
    assert kept_is_encoded()
    book.add(record(11))
    assert kept_is_encoded()
    book.clear()
    assert kept_is_encoded()
    book.add(record(2))
    assert kept_is_encoded()
