"""The journal's views for a live page: ``newest`` builds only what it returns (a dashboard
watching a busy farm costs what it shows), ``activity`` reads every entry without building."""

from __future__ import annotations

import pytest

from emulators.core.clock import Clock
from emulators.core.journal import Entry, Journal, RawRequest


def busy_journal(n: int) -> Journal:
    journal = Journal(Clock())
    for i in range(n):
        journal.record_http("cam", "instar-camera", "http", f"c-{i}", ("127.0.0.1", 5000 + i),
                            "GET", f"/param.cgi?cmd=getserverinfo&n={i}", (), None, 200,
                            b'response="200";', 0.002, None)
    return journal


def test_newest_returns_the_newest_and_counts_what_it_passed_over() -> None:
    journal = busy_journal(50)
    shown, skipped = journal.newest(10, 5)
    assert [e.seq for e in shown] == [46, 47, 48, 49, 50] and skipped == 35
    assert all(isinstance(e, Entry) for e in shown)
    # what it passed over is still raw, and built when someone reads the journal
    assert sum(isinstance(e, Entry) for e in journal._entries) == 5
    assert [e.seq for e in journal.query()][:3] == [1, 2, 3]
    assert journal.newest(50, 5) == ([], 0)
    assert journal.last_seq == 50


def test_activity_reads_time_member_and_duration_newest_first() -> None:
    journal = busy_journal(3)
    journal.record("ftp", "ftp", "ftp", "login", user="cam")
    rows = list(journal.activity(0))
    assert [r[1] for r in rows] == ["ftp", "cam", "cam", "cam"]
    assert rows[0][2] is None and rows[1][2] == 2.0
    assert not any(isinstance(e, Entry) for e in list(journal._entries)[:3])


def test_the_raw_record_build_fills_every_field_of_the_record_type() -> None:
    # record_http builds RawRequest with tuple.__new__, which counts no fields: a field added
    # to the record type but not to the build would shift every later field by one.
    journal = Journal(Clock())
    journal.record_http("cam", "instar-camera", "http", "c-1", ("127.0.0.1", 5000), "POST",
                        "/param.cgi?cmd=set", ((b"Host", b"cam"),), b"body", 200, b"ok",
                        0.002, {"note": "x"})
    raw = journal._entries[0]
    assert type(raw) is RawRequest
    assert len(raw) == len(RawRequest._fields)
    assert raw._asdict() == {
        "seq": 1, "time": raw.time, "member": "cam", "kind": "instar-camera",
        "protocol": "http", "correlation_id": "c-1", "peer": ("127.0.0.1", 5000),
        "method": "POST", "target": "/param.cgi?cmd=set", "raw_headers": ((b"Host", b"cam"),),
        "body": b"body", "body_size": 4, "status": 200, "reply": b"ok", "seconds": 0.002,
        "detail": {"note": "x"}}


def test_every_filter_narrows_the_query_and_an_unknown_one_is_refused_at_once() -> None:
    """The filters are one table (``core.journal``): each still judges its own field, None is
    no filter, and a misspelt filter is a TypeError even on an empty journal, as an unknown
    keyword always was (a test asking for ``memebr=`` must not pass by matching everything)."""
    journal = busy_journal(4)
    journal.record("ftp", "ftp", "ftp", "login", user="cam")
    seqs = lambda **f: [e.seq for e in journal.query(**f)]  # noqa: E731
    assert seqs(member="c?m", method="get", path="/param.*") == [1, 2, 3, 4]
    assert seqs(method="POST") == seqs(path="/other*") == seqs(member="ftp?") == []
    assert seqs(kind="ftp") == seqs(protocol="ftp") == seqs(event="login") == [5]
    assert seqs(status=200, after_seq=2, correlation_id="c-3") == [4]
    assert seqs(since=0, until=journal.clock.time() + 1, member=None) == [1, 2, 3, 4, 5]
    assert seqs(limit=2, member="cam") == [3, 4]
    for empty in (Journal(Clock()), journal):
        with pytest.raises(TypeError):
            empty.query(memebr="cam")  # type: ignore[call-arg]
