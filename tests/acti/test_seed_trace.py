"""Seed 000 replayed byte for byte: the MSIE stage 1 and stage 3 as the document prints them,
and the device's stage 2 and stage 4 compared with the document's bytes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulators.testing import MemberHandle

from .clients import ADMIN, get, load_seed, multipart_body, post, raw_exchange

SEED = load_seed()
CRLF = "\r\n"


def seed_stage1() -> bytes:
    return (CRLF.join(SEED.stage1) + CRLF + CRLF).encode()


def seed_stage2(eol: str = CRLF) -> bytes:
    """The device's stage-2 reply: header lines as printed, HTML lines ending in newlines."""
    blank = SEED.stage2.index("")
    head, body = SEED.stage2[:blank], SEED.stage2[blank + 1:]
    return (eol.join(head) + eol + eol + "\n".join(body) + "\n").encode()


def seed_stage4(eol: str = CRLF) -> bytes:
    blank = SEED.stage4.index("")
    head, body = SEED.stage4[:blank], SEED.stage4[blank + 1:]
    data = ("\n".join(body) + "\n").encode()
    assert f"Content-Length: {len(data)}" in head  # the seed's 3 bytes are "OK\n"
    return (eol.join(head) + eol + eol).encode() + data


def seed_stage3(pem: str) -> bytes:
    """Stage 3 as MSIE sent it, with a real PEM (CRLF lines, as on Windows) for the dots."""
    blank = SEED.stage3.index("")
    head, body_lines = SEED.stage3[:blank], SEED.stage3[blank + 1:]
    dots = next(i for i, line in enumerate(body_lines) if set(line) == {"."})
    body_lines[dots] = pem.rstrip("\n").replace("\n", CRLF)
    body = (CRLF.join(body_lines) + CRLF).encode()
    head = [f"Content-Length: {len(body)}" if h.startswith("Content-Length:") else h
            for h in head]
    return (CRLF.join(head) + CRLF + CRLF).encode() + body


def test_seed_stage3_keeps_the_msie_trace() -> None:
    # Guard the replay itself: the headers a real MSIE sent, unchanged but for the length.
    replay = seed_stage3("X\n").decode()
    assert replay.startswith("POST /cgi-bin/update?HTTPS_CER_SAVE HTTP/1.1\r\nAccept: image/gif")
    assert ("Content-Type: multipart/form-data; boundary=---------------------------7d8261316e0708"
            in replay)
    assert "Content-Type: application/x-gzip-compressed\r\n" in replay
    assert 'filename="certSrv.pem"' in replay
    assert "User-Agent: Mozilla/4.0 (compatible; MSIE" \
        in replay


def test_seed_trace_replayed_byte_for_byte(camera: MemberHandle, self_signed) -> None:
    assert get(camera.url, f"{ADMIN}&HTTPS_CER") == (
        b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 17\r\n\r\n"
        b"HTTPS_CER='none'\n")

    stage2 = raw_exchange(camera.url, seed_stage1())
    assert stage2 == seed_stage2()

    stage4 = raw_exchange(camera.url, seed_stage3(self_signed.cert_pem + self_signed.key_pem))
    assert stage4 == seed_stage4()
    assert stage4 == b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"

    assert get(camera.url, f"{ADMIN}&HTTPS_CER").endswith(b"\r\n\r\nHTTPS_CER='certSrv.pem'\n")
    state = camera.state()
    assert state["https"]["active"] is True
    assert state["files"]["certificate"]["subject"] == "CN=camera.test"


def test_stage3_replay_without_stage1_is_refused(camera: MemberHandle, self_signed) -> None:
    reply = raw_exchange(camera.url, seed_stage3(self_signed.cert_pem))
    assert reply == (b"HTTP/1.0 400 Unauthorized\r\nContent-type: text/plain\r\n"
                     b"Content-Length: 22\r\n\r\nERROR: not authorized\n")
    assert get(camera.url, f"{ADMIN}&HTTPS_CER").endswith(b"HTTPS_CER='none'\n")


def test_https_cer_upload_spelled_right_gives_the_same_form(camera: MemberHandle) -> None:
    assert get(camera.url, f"{ADMIN}&HTTPS_CER=upload") == seed_stage2()


def test_seed_typo_can_be_refused(emulator_factory: Callable[..., MemberHandle]) -> None:
    strict = emulator_factory("acti-camera", tolerate_https_typo=False)
    assert raw_exchange(strict.url, seed_stage1()) == (
        b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 23\r\n\r\n"
        b"ERROR: HTTPS not found\n")


def test_lf_wire_profile_ends_headers_with_bare_newlines(
        emulator_factory: Callable[..., MemberHandle], self_signed) -> None:
    old = emulator_factory("acti-camera", wire="lf")
    assert raw_exchange(old.url, seed_stage1()) == seed_stage2("\n")
    reply = raw_exchange(old.url, seed_stage3(self_signed.combined.decode()))
    assert reply == b"HTTP/1.0 200 OK\nContent-type: text/plain\nContent-Length: 3\n\nOK\n"
    assert reply == seed_stage4("\n")


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_replies_are_http10_whatever_the_request(camera: MemberHandle, version: str) -> None:
    reply = get(camera.url, f"{ADMIN}&HTTPS_CER", version=version)
    head = reply.split(b"\r\n\r\n")[0].split(b"\r\n")
    # No Date, no Server, no Connection: only what the firmware writes.
    assert head == [b"HTTP/1.0 200 OK", b"Content-type: text/plain", b"Content-Length: 17"]


def test_upload_by_the_helper_matches_stage4(camera: MemberHandle, self_signed) -> None:
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    content_type, body = multipart_body(self_signed.combined)
    assert post(camera.url, "HTTPS_CER_SAVE", content_type, body) == seed_stage4()
