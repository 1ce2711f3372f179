"""The SASL layer's codec (emulators/core/amqp/sasl.py): its frames decode as proton's own
codec reads them, and PLAIN responses are read as RFC 4616 says."""

from __future__ import annotations

import pytest
from proton import symbol

from emulators.core.amqp import sasl


@pytest.mark.parametrize(("made", "code", "fields"), [
    (sasl.mechanisms_frame(), sasl.SASL_MECHANISMS, [[symbol("PLAIN")]]),
    (sasl.challenge_frame(), sasl.SASL_CHALLENGE, [b""]),
    (sasl.outcome_frame(sasl.Code.AUTH), sasl.SASL_OUTCOME, [1]),
    (sasl.init_frame("PLAIN", b"\x00u\x00p", "host"), sasl.SASL_INIT,
     [symbol("PLAIN"), b"\x00u\x00p", "host"]),
], ids=["mechanisms", "challenge", "outcome", "init"])
def test_a_frame_reads_back(made: bytes, code: int, fields: list[object]) -> None:
    size, doff, kind, _ = sasl.FRAME_HEADER.unpack(made[:8])
    assert (size, doff, kind) == (len(made), 2, sasl.SASL_FRAME)
    got_code, got_fields = sasl.parse_body(made[8:], doff)
    assert got_code == code
    assert [list(f) if not isinstance(f, bytes | str) and hasattr(f, "__iter__") else f
            for f in got_fields] == fields


def test_a_descriptor_may_be_the_symbolic_name() -> None:
    from proton import Data, Described

    data = Data()
    data.put_object(Described(symbol("amqp:sasl-init:list"), [symbol("PLAIN"), b"\x00a\x00b"]))
    assert sasl.parse_body(bytes(data.encode()), 2) == (sasl.SASL_INIT,
                                                       [symbol("PLAIN"), b"\x00a\x00b"])


@pytest.mark.parametrize(("response", "expected"), [
    (b"\x00user\x00pass", ("user", "pass", "", None)),
    (b"admin\x00user\x00pass", ("user", "pass", "admin", None)),
    ("\x00ü\x00pässwörd".encode(), ("ü", "pässwörd", "", None)),
    (b"\x00user\x00", ("user", "", "", None)),
    (b"user\x00pass", ("", "", "", "a PLAIN response is authzid NUL authcid NUL passwd")),
    (b"\x00a\x00b\x00c", ("", "", "", "a PLAIN response is authzid NUL authcid NUL passwd")),
    (b"\x00\xff\x00p", ("", "", "", "a PLAIN response is UTF-8")),
    (b"\x00\x00p", ("", "", "", "an empty PLAIN user name")),
], ids=["plain", "authzid", "utf8", "empty-password", "one-nul", "three-nuls", "not-utf8",
        "empty-user"])
def test_a_plain_response(response: bytes, expected: tuple[str, str, str, str | None]) -> None:
    got = sasl.plain(response)
    assert (got.username, got.password, got.authzid, got.problem) == expected
