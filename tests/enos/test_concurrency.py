"""Calls that race for one key, one CN or one certificate, fired together over HTTP: the
duplicate and renew checks stay exact (one call wins, every other gets the documented error),
as if the calls had come one after another."""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from emulators.enos.models.ca import RootCA

from .clients import CERTS, ORG, Enos, base_options, ec_key, make_csr, rsa_key
from .test_errors import BOUND_ELSEWHERE

CALLS = 8
RACERS = [f"assetR{n}" for n in range(CALLS)]
REVOKED = "The original certificate has been revoked and cannot be updated."


def _duplicate_subject(cn: str) -> str:
    return ("Duplicate subject by certificate request!message: The subject of the CSR is "
            f"already in use, detail message: CN={cn} belongs to a certificate of another device")


@pytest.fixture
def racing_enos(start_enos, roots):
    """An emulator with CALLS more devices of a bi-directional product."""

    def start(**changes: Any):
        devices = [*base_options(roots)["devices"],
                   *({"orgId": ORG, "assetId": a, "productKey": "PBiDir01",
                      "deviceKey": a.replace("asset", "dev")} for a in RACERS)]
        return start_enos(devices=devices, **changes)

    return start


async def _together(enos: Enos, calls: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """(action, assetId, body) calls, all sent at once; their reply documents in order."""
    url, token = enos.url, enos.sdk_token()
    async with aiohttp.ClientSession() as session:

        async def call(action: str, asset: str, body: dict[str, Any]) -> Any:
            query = urllib.parse.urlencode({"action": action, "orgId": ORG, "assetId": asset})
            async with session.post(f"{url}{CERTS}?{query}", json=body,
                                    headers={"apim-accesstoken": token}) as resp:
                return await resp.json(content_type=None)

        return await asyncio.gather(*(call(*c) for c in calls))


def _outcomes(replies: list[Any]) -> list[tuple[int, str]]:
    return sorted((r["code"], r["msg"]) for r in replies)


def test_one_key_applied_for_by_many_devices_at_once_is_issued_once(racing_enos) -> None:
    enos = racing_enos()
    for round_ in range(3):
        csrs = [make_csr(rsa_key(2048, 40 + round_), f"same-key-{round_}-{n}") for n in
                range(CALLS)]
        replies = asyncio.run(_together(enos, [
            ("apply", asset, {"csr": csr, "issueAuthority": "RSA"})
            for asset, csr in zip(RACERS, csrs, strict=True)]))
        assert _outcomes(replies) == [(0, "OK")] + [(11833, BOUND_ELSEWHERE)] * (CALLS - 1)
        assert all(r["data"] is None for r in replies if r["code"])
        [winner] = [asset for asset, r in zip(RACERS, replies, strict=True) if r["code"] == 0]
        listed = {asset: [c["certSN"] for c in enos.sdk("list", assetId=asset)["data"]]
                  for asset in RACERS}
        assert {a: len(sns) for a, sns in listed.items() if sns} == {winner: round_ + 1}


def test_one_cn_applied_for_by_many_devices_at_once_is_issued_once(racing_enos) -> None:
    enos = racing_enos()
    for round_ in range(3):
        cn = f"same-cn-{round_}"
        replies = asyncio.run(_together(enos, [
            ("apply", asset, {"csr": make_csr(ec_key("secp256r1", 200 + 10 * round_ + n), cn),
                              "issueAuthority": "ECC"})
            for n, asset in enumerate(RACERS)]))
        assert _outcomes(replies) == ([(0, "OK")]
                                      + [(99400, _duplicate_subject(cn))] * (CALLS - 1))
        assert sum(c["cn"] == cn for c in enos.state()["certificates"]) == 1


def test_one_device_applying_with_its_key_at_once_gets_every_certificate(racing_enos) -> None:
    enos = racing_enos()
    csr = make_csr(rsa_key(2048, 50), "own-key")
    replies = asyncio.run(_together(enos, [
        ("apply", "assetR0", {"csr": csr, "issueAuthority": "RSA"})] * CALLS))
    assert [r["code"] for r in replies] == [0] * CALLS
    serials = {r["data"]["certSN"] for r in replies}
    assert len(serials) == CALLS
    listed = {c["certSN"] for c in enos.sdk("list", assetId="assetR0")["data"]}
    assert listed == serials


def test_renews_of_one_certificate_at_once_when_renew_revokes_the_old(racing_enos) -> None:
    enos = racing_enos(renew_old_certificate="revoke")
    sn = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 51), "renewed")},
                  assetId="assetR0")["data"]["certSN"]
    replies = asyncio.run(_together(enos, [("renew", "assetR0", {"certSn": sn})] * CALLS))
    assert _outcomes(replies) == [(0, "OK")] + [(99400, REVOKED)] * (CALLS - 1)
    statuses = sorted(c["certStatus"] for c in enos.sdk("list", assetId="assetR0")["data"])
    assert statuses == [0, 1]  # the renewed certificate, and the old one revoked


def test_renews_of_one_certificate_at_once_when_the_old_one_is_kept(racing_enos) -> None:
    enos = racing_enos()
    sn = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 52), "kept")},
                  assetId="assetR0")["data"]["certSN"]
    replies = asyncio.run(_together(enos, [("renew", "assetR0", {"certSn": sn})] * CALLS))
    assert [r["code"] for r in replies] == [0] * CALLS
    assert len({r["data"]["certSN"] for r in replies}) == CALLS


def test_renew_and_revoke_of_one_certificate_at_once(racing_enos) -> None:
    """Renew (which revokes the old certificate here) and revoke race: one of them wins, the
    other answers as it would coming second."""
    enos = racing_enos(renew_old_certificate="revoke")
    for round_ in range(4):
        sn = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 53), f"raced-{round_}")},
                      assetId="assetR0")["data"]["certSN"]
        renewed, revoked = asyncio.run(_together(enos, [
            ("renew", "assetR0", {"certSn": sn}), ("revoke", "assetR0", {"certSn": sn})]))
        if renewed["code"] == 0:
            assert (revoked["code"], revoked["msg"]) == (
                99400, "Revoke cert is failed!message: The certificate has already been revoked, "
                       f"detail message: certSn {sn} was revoked before")
        else:
            assert (renewed["code"], renewed["msg"]) == (99400, REVOKED)
            assert revoked["code"] == 0


def _signing_paused(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """RootCA.sign (run in the executor) waits for ``go`` once ``entered`` is set."""
    entered, go = threading.Event(), threading.Event()
    sign = RootCA.sign

    def paused(self: RootCA, builder: Any) -> Any:
        entered.set()
        assert go.wait(10)
        return sign(self, builder)

    monkeypatch.setattr(RootCA, "sign", paused)
    return entered, go


def test_a_reset_while_a_certificate_is_signed_wipes_it(racing_enos, monkeypatch) -> None:
    enos = racing_enos()
    entered, go = _signing_paused(monkeypatch)
    csr = make_csr(rsa_key(2048, 54), "reset-meanwhile")
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(enos.sdk, "apply", {"csr": csr}, assetId="assetR0")
        assert entered.wait(10)
        enos.handle.reset()  # the loop is free while the executor signs
        go.set()
        assert reply.result(10)["code"] == 0  # the apply came first, then the reset
    assert enos.sdk("list", assetId="assetR0")["data"] == []
    # Nothing is left held: another device may apply with that key now.
    assert enos.sdk("apply", {"csr": csr}, assetId="assetR1")["code"] == 0


def test_a_failed_signature_releases_the_key(racing_enos, monkeypatch) -> None:
    enos = racing_enos()

    def broken(self: RootCA, builder: Any) -> Any:
        raise RuntimeError("a bug of ours")

    csr = make_csr(rsa_key(2048, 55), "failed-once")
    with monkeypatch.context() as patch:
        patch.setattr(RootCA, "sign", broken)
        failed = enos.sdk("apply", {"csr": csr}, assetId="assetR0")
    assert (failed["code"], failed["msg"]) == (99500, "Internal error of certificate service.")
    assert enos.sdk("apply", {"csr": csr}, assetId="assetR1")["code"] == 0
