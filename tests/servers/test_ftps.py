"""Explicit FTPS (AUTH TLS on the FTP port): verifying clients, and the certificates that
must fail verification (self-signed, wrong name), with ftplib, curl and openssl."""

from __future__ import annotations

import datetime as dt
import ftplib
import hashlib
import json
import ssl
import subprocess

import pytest

from emulators import pki, scenario
from tests.servers.clients import FTP_USER, ftps_context, store

PAYLOAD = b"WQHD snapshot " * 500


def tls_client(server, context: ssl.SSLContext) -> ftplib.FTP_TLS:
    client = ftplib.FTP_TLS(context=context)
    client.connect("127.0.0.1", server.port, timeout=10)
    return client


@pytest.mark.parametrize("passive", [True, False], ids=["PASV", "PORT"])
def test_verifying_client_trusts_the_farm_ca_and_uploads_over_protected_data(ftp_server,
                                                                             passive):
    server = ftp_server(tls="explicit", certificate="farm-ca")
    tls = server.description["tls"]
    assert tls["mode"] == "explicit"
    assert tls["certificate"] == "farm-ca"
    with tls_client(server, ftps_context(tls["ca_pem"])) as client:
        assert client.auth() == "234 AUTH TLS successful."
        client.login(FTP_USER["name"], FTP_USER["password"])
        assert client.prot_p() == "200 Protection set to Private"
        client.set_pasv(passive)
        store(client, "secure.jpg", PAYLOAD)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    [record] = server.call(lambda m: m.received_files())
    assert record["protocol"] == "ftps"
    assert record["mode"] == ("passive" if passive else "active")
    assert record["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()


def test_urls_name_the_explicit_tls_port(ftp_server):
    server = ftp_server(tls="explicit")
    assert server.urls == {"ftp": f"ftp://127.0.0.1:{server.port}",
                           "ftps": f"ftp://127.0.0.1:{server.port}"}
    plain = ftp_server()
    assert plain.urls == {"ftp": f"ftp://127.0.0.1:{plain.port}"}
    assert plain.description["tls"] is None


@pytest.mark.parametrize(("certificate", "why"), [
    ("self-signed", "self-signed certificate"),
    ("wrong-name", "IP address mismatch"),
], ids=["self-signed", "wrong-name"])
def test_unverifiable_certificates_fail_a_verifying_client(ftp_server, certificate, why):
    server = ftp_server(tls="explicit", certificate=certificate)
    farm_ca = server.call(lambda m: m.ctx.ca.pem)
    with tls_client(server, ftps_context(farm_ca)) as client:
        with pytest.raises(ssl.SSLCertVerificationError, match=why):
            client.auth()
    # ...while a client that does not verify (INSTAR's ft_insecure=1) gets through.
    insecure = pki.client_context(verify=False)
    with tls_client(server, insecure) as client:
        client.auth()
        client.login(FTP_USER["name"], FTP_USER["password"])
        client.prot_p()
        store(client, "insecure.jpg", b"ok")
    assert [r["protocol"] for r in server.call(lambda m: m.received_files())] == ["ftps"]


def test_wrong_name_fails_by_dns_name_too(ftp_server):
    server = ftp_server(tls="explicit", certificate="wrong-name")
    context = ftps_context(server.call(lambda m: m.ctx.ca.pem))
    client = ftplib.FTP_TLS(context=context)
    try:
        client.connect("localhost", server.port, timeout=10)
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            client.auth()
    finally:
        client.close()


def test_supplied_certificate_is_served(ftp_server):
    ca_key = pki.ec_key()
    ca = pki.make_ca(pki.name(CN="Customer CA"), ca_key)
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN="ftp.customer.example"), ca, ca_key,
                     ip_addresses=("127.0.0.1",), server=True)
    server = ftp_server(tls="explicit", certificate="supplied", cert_pem=pki.cert_pem(cert),
                        key_pem=pki.key_pem(key))
    with tls_client(server, ftps_context(pki.cert_pem(ca))) as client:
        client.auth()
        der = client.sock.getpeercert(binary_form=True)
    assert pki.load_cert(der).subject == pki.name(CN="ftp.customer.example")
    assert server.description["tls"]["ca_pem"] is None


def test_tls_required_refuses_a_clear_login(ftp_server):
    server = ftp_server(tls="explicit", tls_control_required=True, tls_data_required=True)
    with ftplib.FTP() as clear:
        clear.connect("127.0.0.1", server.port, timeout=10)
        with pytest.raises(ftplib.error_perm,
                           match=r"^550 SSL/TLS required on the control channel\.$"):
            clear.login(FTP_USER["name"], FTP_USER["password"])
    with tls_client(server, ftps_context(server.description["tls"]["ca_pem"])) as client:
        client.login(FTP_USER["name"], FTP_USER["password"])  # FTP_TLS.login sends AUTH first
        with pytest.raises(ftplib.error_perm,
                           match=r"^550 SSL/TLS required on the data channel\.$"):
            client.sendcmd("PASV")
        client.prot_p()
        store(client, "ok.jpg", b"ok")


def test_plain_ftp_still_works_on_a_tls_server(ftp_server):
    server = ftp_server(tls="explicit")
    with ftplib.FTP() as client:
        client.connect("127.0.0.1", server.port, timeout=10)
        client.login(FTP_USER["name"], FTP_USER["password"])
        store(client, "clear.jpg", b"clear")
    assert [r["protocol"] for r in server.call(lambda m: m.received_files())] == ["ftp"]


def test_curl_explicit_tls_upload_verifies_against_the_ca(ftp_server, tmp_path):
    server = ftp_server(tls="explicit")
    ca_file = tmp_path / "farm-ca.pem"
    ca_file.write_text(server.description["tls"]["ca_pem"])
    source = tmp_path / "alarm.jpg"
    source.write_bytes(PAYLOAD)
    url = f"ftp://127.0.0.1:{server.port}/alarm.jpg"
    done = subprocess.run(["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert",
                           str(ca_file), "--user", "cam:s3cret", "-T", str(source), url],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    [record] = server.call(lambda m: m.received_files())
    assert (record["protocol"], record["size"]) == ("ftps", len(PAYLOAD))


def test_openssl_starttls_sees_the_farm_ca_chain(ftp_server, tmp_path):
    server = ftp_server(tls="explicit")
    ca_file = tmp_path / "farm-ca.pem"
    ca_file.write_text(server.description["tls"]["ca_pem"])
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-starttls", "ftp",
         "-CAfile", str(ca_file), "-verify_return_error", "-verify_ip", "127.0.0.1"],
        input="QUIT\r\n", capture_output=True, text=True, timeout=20, check=False)
    assert "Verify return code: 0 (ok)" in done.stdout, done.stdout + done.stderr


def _pem_pair() -> tuple[str, str]:
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN="x"), None, key,
                     now=dt.datetime.now(dt.UTC), server=True)
    return pki.cert_pem(cert), pki.key_pem(key)


CERT, KEY = _pem_pair()
OTHER_CERT, _ = _pem_pair()


@pytest.mark.parametrize(("options", "message"), [
    ({"certificate": "supplied"}, "certificate 'supplied' needs cert_pem and key_pem"),
    ({"certificate": "supplied", "cert_pem": OTHER_CERT, "key_pem": KEY},
     "cert_pem and key_pem are not a pair"),
    ({"certificate": "supplied", "cert_pem": "not pem", "key_pem": KEY},
     "not an X.509 certificate"),
    ({"cert_pem": CERT, "key_pem": KEY}, "only read with certificate: supplied"),
    ({"certificate": "letsencrypt"}, "Input should be 'farm-ca', 'self-signed'"),
    ({"tls": "implicit"}, "Input should be 'none' or 'explicit'"),
    ({"passive_ports": [40010, 40000]}, "1024 <= low <= high <= 65535"),
    ({"passive_ports": [21, 30]}, "1024 <= low <= high <= 65535"),
    ({"users": []}, "needs at least one user"),
    ({"users": [{"name": "cam"}]}, "FTP user 'cam' needs a password"),
    ({"users": [{"name": "cam", "password": "a", "home": "../up"}]}, "without '..'"),
    ({"users": [{"name": "cam", "password": "a", "home": "/abs"}]}, "without '..'"),
    ({"users": [{"name": "a b", "password": "a"}]}, "user names are"),
    ({"users": [FTP_USER, FTP_USER]}, "user 'cam' is listed twice"),
    ({"max_upload_bytes": 0}, "greater than or equal to 1"),
    ({"anonymous": True}, "unknown key"),
], ids=["supplied-without-pem", "mismatched-pair", "garbage-cert", "pem-without-supplied",
        "unknown-certificate", "implicit-tls", "inverted-range", "privileged-range", "no-users",
        "no-password", "home-dotdot", "home-absolute", "bad-user-name", "duplicate-user",
        "zero-upload-limit", "unknown-option"])
def test_scenario_rejects_bad_ftp_options(options, message):
    entry = {"name": "ftp", "kind": "ftp", "tls": "explicit", "users": [FTP_USER], **options}
    with pytest.raises(scenario.ScenarioInvalid) as caught:
        scenario.load({"servers": [entry]})
    assert message in str(caught.value)


@pytest.mark.parametrize("certificate", ["farm-ca", "self-signed", "wrong-name", "supplied"])
def test_the_members_state_view_holds_no_private_key(ftp_server, certificate):
    """The control plane's ``/state`` shows the member's view: the certificate, never its
    key (the key stays in the saved state, which the server needs to restart)."""
    options = {}
    if certificate == "supplied":
        key = pki.ec_key()
        subject = pki.name(CN="127.0.0.1")
        options = {"cert_pem": pki.cert_pem(pki.issue(key.public_key(), subject, None, key,
                                                      days=30, ip_addresses=("127.0.0.1",),
                                                      server=True)),
                   "key_pem": pki.key_pem(key)}
    server = ftp_server(tls="explicit", certificate=certificate, **options)
    state = server.state()
    assert "key_pem" not in state["tls"]
    assert state["tls"]["cert_pem"] == server.description["tls"]["cert_pem"]
    for view in (state, server.description):
        assert "PRIVATE KEY" not in json.dumps(view)
    saved = server.call(lambda m: m.dump_state())  # what the flash keeps, to restart on
    assert "PRIVATE KEY" in saved["tls"]["key_pem"]
