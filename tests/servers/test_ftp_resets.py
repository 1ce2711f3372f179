"""A client that resets its data connection (TCP RST) mid-upload: the STOR is answered 426,
the upload is journalled as incomplete, the previous file stays whole, and the server goes on
serving. Driven with ftplib on the control connection and a raw socket for the data."""

from __future__ import annotations

import ftplib
import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from tests.servers.clients import (
    events_of,
    ftp_login,
    ftps_context,
    reset,
    store,
)

OLD = b"old file, whole\n" * 500
CHUNK = b"n" * 20_000
CUT = "426 Connection closed; transfer aborted."


def _pasv(client: ftplib.FTP) -> socket.socket:
    host, port = ftplib.parse227(client.sendcmd("PASV"))
    return socket.create_connection((host, port), timeout=10)


def _storing(client: ftplib.FTP) -> socket.socket:
    """PASV and STOR, the server's 125/150 read: the data connection, ready for the upload."""
    data = _pasv(client)
    client.putcmd("STOR snap.jpg")
    assert client.getresp().startswith(("125", "150"))
    return data


def _data_then_reset(client: ftplib.FTP) -> str:
    """PASV, STOR, 20 KB on the data connection, then a reset."""
    data = _storing(client)
    data.sendall(CHUNK)
    time.sleep(0.1)  # the server has read it all: only the reset is left to tell
    reset(data)
    return client.getline().rstrip("\r\n")


def _tls_data_then_reset(client: ftplib.FTP) -> str:
    """The same over a TLS data connection (PROT P)."""
    assert isinstance(client, ftplib.FTP_TLS)
    client.prot_p()
    data = _storing(client)
    secure = client.context.wrap_socket(data, server_hostname="127.0.0.1")
    secure.sendall(CHUNK)
    time.sleep(0.1)
    reset(secure)  # no close_notify: the TCP connection is reset under TLS
    return client.getline().rstrip("\r\n")


def _reset_right_after_connect(client: ftplib.FTP) -> str:
    """Connect, send STOR and reset at once: the server may accept a connection that is
    already dead (its data handler then half-built) or meet the reset later."""
    data = _pasv(client)
    client.putcmd("STOR snap.jpg")
    reset(data)
    first = client.getline().rstrip("\r\n")
    assert first.startswith(("125", "150")), first
    return client.getline().rstrip("\r\n")


def _reset_before_any_byte(client: ftplib.FTP) -> str:
    data = _storing(client)
    reset(data)
    return client.getline().rstrip("\r\n")


def _reset_during_tls_handshake(client: ftplib.FTP) -> str:
    assert isinstance(client, ftplib.FTP_TLS)
    client.prot_p()
    data = _storing(client)
    reset(data)  # before the client's TLS hello
    return client.getline().rstrip("\r\n")


def _active_data_then_reset(client: ftplib.FTP) -> str:
    """PORT mode: the server connects to the client, which resets after 20 KB."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        port = listener.getsockname()[1]
        client.sendcmd(f"PORT 127,0,0,1,{port // 256},{port % 256}")
        client.putcmd("STOR snap.jpg")
        data, _ = listener.accept()
    assert client.getresp().startswith(("125", "150"))
    data.sendall(CHUNK)
    time.sleep(0.1)
    reset(data)
    return client.getline().rstrip("\r\n")


RESETS: list[tuple[str, Callable[[ftplib.FTP], str], bool]] = [
    ("pasv-data", _data_then_reset, False),
    ("tls-data-prot-p", _tls_data_then_reset, True),
    ("right-after-connect", _reset_right_after_connect, False),
    ("right-after-connect-tls", _reset_right_after_connect, True),
    ("before-any-byte", _reset_before_any_byte, False),
    ("during-tls-handshake", _reset_during_tls_handshake, True),
    ("port-data", _active_data_then_reset, False),
]


def _login(server, tls: bool) -> ftplib.FTP:
    if not tls:
        return ftp_login(server)
    client = ftplib.FTP_TLS(context=ftps_context(server.description["tls"]["ca_pem"]))
    client.connect("127.0.0.1", server.port, timeout=10)
    client.auth()
    client.login("cam", "s3cret")
    return client


@pytest.mark.parametrize(("how", "tls"), [pytest.param(how, tls, id=name)
                                          for name, how, tls in RESETS])
def test_a_reset_upload_is_426_incomplete_and_the_old_file_stays(ftp_server, caplog, how, tls):
    caplog.set_level(logging.INFO)
    server = ftp_server(tls="explicit")
    with _login(server, tls) as client:
        store(client, "snap.jpg", OLD)
    before = server.call(lambda m: m.received_files())
    for _attempt in range(3):  # a race either way must end the same
        with _login(server, tls) as client:
            client.voidcmd("TYPE I")
            assert how(client) == CUT
            assert client.voidcmd("NOOP").startswith("200")  # replies still in step
    incomplete = events_of(server, "upload_incomplete", count=3)
    assert {e["path"] for e in incomplete} == {"snap.jpg"}
    root = server.call(lambda m: m.user_root("cam"))
    assert (root / "snap.jpg").read_bytes() == OLD
    assert server.call(lambda m: m.received_files()) == before
    assert sorted(p.name for p in root.iterdir()) == ["snap.jpg"]  # no temporary file left
    with _login(server, tls) as client:  # the server still takes logins and uploads
        assert store(client, "after.jpg", b"after") == "226 Transfer complete."
    assert server.call(lambda m: m.received_files())[-1]["sha256"] == hashlib.sha256(
        b"after").hexdigest()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def test_a_data_connection_lost_before_stor_fails_the_stor_instead_of_hanging(ftp_server):
    """The data connection dies before any transfer command: the STOR that comes for it is
    answered (150, then 426) at once, never left waiting for a connection that is gone."""
    server = ftp_server()
    with ftp_login(server) as client:
        data = _pasv(client)
        reset(data)
        time.sleep(0.2)  # the server sees the dead connection before the STOR
        client.putcmd("STOR late.jpg")
        assert client.getline().startswith(("125", "150"))
        assert client.getline().rstrip("\r\n") == CUT
        assert client.voidcmd("NOOP").startswith("200")
        assert store(client, "late.jpg", b"fine") == "226 Transfer complete."
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == ["late.jpg"]
    assert events_of(server, "upload_incomplete")[0]["path"] == "late.jpg"


def test_a_clean_close_of_the_data_connection_is_still_a_complete_upload(ftp_server):
    """The other side of the rule: FIN (shutdown, close) ends an upload, and it is 226."""
    server = ftp_server(tls="explicit")
    with ftp_login(server) as client:
        client.voidcmd("TYPE I")
        data = _pasv(client)
        client.putcmd("STOR clean.jpg")
        assert client.getresp().startswith(("125", "150"))
        data.sendall(CHUNK)
        data.shutdown(socket.SHUT_WR)
        data.close()
        assert client.getresp() == "226 Transfer complete."
    [record] = server.call(lambda m: m.received_files())
    assert (record["path"], record["size"]) == ("clean.jpg", len(CHUNK))


def test_a_tls_upload_closed_with_close_notify_is_complete(ftp_server):
    server = ftp_server(tls="explicit")
    context = ftps_context(server.description["tls"]["ca_pem"])
    with ftplib.FTP_TLS(context=context) as client:
        client.connect("127.0.0.1", server.port, timeout=10)
        client.auth()
        client.login("cam", "s3cret")
        client.prot_p()
        assert store(client, "tls.jpg", CHUNK) == "226 Transfer complete."
    assert server.call(lambda m: m.received_files())[0]["size"] == len(CHUNK)


def test_a_tls_upload_closed_without_close_notify_is_complete_and_quiet(ftp_server, caplog):
    """FIN under TLS with no close_notify (many FTPS clients end a data connection so): the
    end of the upload, 226, and no traceback in the log."""
    caplog.set_level(logging.INFO)
    server = ftp_server(tls="explicit")
    with _login(server, tls=True) as client:
        assert isinstance(client, ftplib.FTP_TLS)
        client.prot_p()
        client.voidcmd("TYPE I")
        data = _pasv(client)
        client.putcmd("STOR fin.jpg")
        assert client.getresp().startswith(("125", "150"))
        secure = client.context.wrap_socket(data, server_hostname="127.0.0.1")
        secure.sendall(CHUNK)
        secure.shutdown(socket.SHUT_RDWR)
        secure.close()
        assert client.getresp() == "226 Transfer complete."
    assert server.call(lambda m: m.received_files())[0]["size"] == len(CHUNK)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def _tls_over(sock: socket.socket, context: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """A client TLS session over ``sock`` whose records the test sends itself (MemoryBIO)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            received = sock.recv(65536)
            assert received, "the server closed the data connection during the handshake"
            incoming.write(received)
    sock.sendall(outgoing.read())
    return tls, outgoing


def test_a_tls_upload_whose_records_arrive_in_pieces_is_stored_whole(ftp_server):
    """TLS records split across TCP segments with pauses between them (a busy machine, a slow
    link): the server meets half a record (OpenSSL's "want read") again and again. That is not
    the end of the upload: every byte is stored, and the record and "226" say so. (It was
    taken for an EOF without close_notify: the upload was cut at a record boundary, recorded
    short and answered 226.)"""
    server = ftp_server(tls="explicit")
    payload = bytes(range(256)) * 1200  # 300 KiB: about twenty 16 KiB records
    with _login(server, tls=True) as client:
        assert isinstance(client, ftplib.FTP_TLS)
        client.prot_p()
        client.voidcmd("TYPE I")
        data = _pasv(client)
        client.putcmd("STOR pieces.bin")
        assert client.getresp().startswith(("125", "150"))
        tls, outgoing = _tls_over(data, client.context)
        tls.write(payload)
        wire = outgoing.read()
        for start in range(0, len(wire), 5000):  # about three pieces per record
            data.sendall(wire[start:start + 5000])
            time.sleep(0.005)
        with pytest.raises(ssl.SSLWantReadError):
            tls.unwrap()  # close_notify sent; the server's own comes back later
        data.sendall(outgoing.read())
        assert client.getresp() == "226 Transfer complete."
        data.close()
    [record] = server.call(lambda m: m.received_files())
    assert (record["size"], record["sha256"]) == (len(payload),
                                                  hashlib.sha256(payload).hexdigest())
    root = server.call(lambda m: m.user_root("cam"))
    assert (root / "pieces.bin").read_bytes() == payload
