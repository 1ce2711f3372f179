"""Target 4: INSTAR `testftp` end to end (HTTP request -> real upload -> reply) over FTP, FTPS
and SFTP, against a plain client uploading the same JPEG to the same server from here.

    python bench/uploads.py [--runs 100] [--warmup 5]

The farm (three cameras, an FTP, an FTPS and an SFTP server) runs in its own process. Each
round times one camera testftp and one baseline upload back to back, so both see the same
machine; the figures are medians (and p90) over --runs rounds. The baseline does the same
protocol steps the camera does (login, change into the folder, PWD, passive STOR, QUIT; or
SSH login, stat the folder, open/write/close): the ratio is the camera's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ftplib
import http.client
import io
import ssl
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import asyncssh
from common import ROOT, env_note, farm_process, show

JPEG = (ROOT / "fixtures" / "instar" / "Test-Snapshot.jpeg").read_bytes()
USER, PASSWORD, FOLDER = "bench", "bench-pass", "bench"
TARGETS_MS = {"ftp": 50.0, "ftps": 80.0, "sftp": 150.0}
CAMERA_FTP = {"ft_dirname": FOLDER, "ft_dirmode": 0, "ft_autocreatedir": 1, "ft_mode": 1}


def scenario() -> dict[str, Any]:
    users = [{"name": USER, "password": PASSWORD}]
    return {"name": "bench-uploads", "servers": [
        {"name": "ftp", "kind": "ftp", "users": users},
        {"name": "ftps", "kind": "ftp", "tls": "explicit", "certificate": "farm-ca",
         "users": users},
        {"name": "sftp", "kind": "sftp", "users": users},
    ], "emulators": [
        # ft_insecure 0 everywhere: FTPS verifies the farm CA, sFTP checks the pinned key.
        {"name": f"cam-{proto}", "kind": "instar-camera", "upload_server": proto,
         "upload_user": USER, "ftp": {**CAMERA_FTP, "ft_insecure": 0}}
        for proto in ("ftp", "ftps", "sftp")
    ]}


class Camera:
    """One keep-alive HTTP connection to a camera's param.cgi, as a test client would hold."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.auth = "Basic " + base64.b64encode(b"admin:instar").decode()

    def cgi(self, query: str) -> dict[str, str]:
        try:
            self.conn.request("GET", f"/param.cgi?{query}",
                              headers={"Authorization": self.auth})
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The camera closed the connection while it sat idle (keep-alive timeout) during
            # another protocol's rounds: open a new one, as a browser does.
            self.conn.close()
            self.conn.request("GET", f"/param.cgi?{query}",
                              headers={"Authorization": self.auth})
            resp = self.conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise SystemExit(f"camera answered {resp.status}: {body}")
        values = {}
        for line in body.split("\r\n"):
            key, _, value = line.partition("=")
            values[key] = value.removesuffix(";").strip('"')
        return values

    def testftp(self, extra: str = "") -> None:
        values = self.cgi(f"cmd=testftp{extra}")
        if values.get("result") != "0":
            raise SystemExit(f"testftp failed: {values}")

    def close(self) -> None:
        self.conn.close()


def ftp_baseline(host: str, port: int, context: ssl.SSLContext | None) -> None:
    ftp = ftplib.FTP_TLS(context=context, timeout=10) if context else ftplib.FTP(timeout=10)
    with ftp:
        ftp.connect(host, port)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.auth()
        ftp.login(USER, PASSWORD)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.cwd(FOLDER)
        ftp.pwd()
        ftp.storbinary("STOR Test-Snapshot.jpeg", io.BytesIO(JPEG))
        ftp.quit()


async def sftp_baseline(host: str, port: int, host_key: str) -> None:
    known = asyncssh.import_known_hosts(f"[{host}]:{port} {host_key}\n")
    async with asyncssh.connect(host, port, username=USER, password=PASSWORD,
                                known_hosts=known, client_keys=None, agent_path=None,
                                config=None) as conn, conn.start_sftp_client() as sftp:
        await sftp.isdir(FOLDER)
        async with sftp.open(f"{FOLDER}/Test-Snapshot.jpeg", "wb") as handle:
            await handle.write(JPEG)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def summary(times: list[float]) -> str:
    p90 = statistics.quantiles(times, n=10)[-1]
    return f"median {statistics.median(times):6.2f} ms   p90 {p90:6.2f}   min {min(times):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", choices=sorted(TARGETS_MS), action="append")
    args = parser.parse_args()
    runner = asyncio.Runner()
    with farm_process(scenario()) as (_proc, ready, _t):
        servers = {s["name"]: s for s in ready["servers"]}
        cams = {m["name"].removeprefix("cam-"): Camera(m["urls"]["http"])
                for m in ready["emulators"]}
        tls = ssl.create_default_context(cadata=ready["ca"]["pem"])
        sftp = servers["sftp"]
        baselines: dict[str, Callable[[], Any]] = {
            "ftp": lambda: ftp_baseline("127.0.0.1", servers["ftp"]["port"], None),
            "ftps": lambda: ftp_baseline("127.0.0.1", servers["ftps"]["port"], tls),
            "sftp": lambda: runner.run(sftp_baseline("127.0.0.1", sftp["port"],
                                                     sftp["host_key"]["line"])),
        }
        # The sFTP camera pins the server's key (the seed's sethost walk-through) once.
        cams["sftp"].testftp("&sethost=" + quote(sftp["host_key"]["blob"], safe=""))
        try:
            for proto in args.only or ("ftp", "ftps", "sftp"):
                cam, base = cams[proto], baselines[proto]
                for _ in range(args.warmup):
                    cam.testftp()
                    base()
                cam_ms, base_ms = [], []
                for _ in range(args.runs):
                    cam_ms.append(timed(cam.testftp))
                    base_ms.append(timed(base))
                ratio = statistics.median(cam_ms) / statistics.median(base_ms)
                show(f"testftp over {proto.upper()} ({env_note()}, {args.runs} rounds)", [
                    ("camera testftp", summary(cam_ms)
                     + f"   (target median < {TARGETS_MS[proto]:.0f} ms)"),
                    ("baseline upload", summary(base_ms) + "   (plain client from here)"),
                    ("ratio", f"{ratio:.2f}x the baseline's median"),
                    # The server saves its whole history at each upload (see README), so
                    # a late round costs more than an early one.
                    ("camera, first / last 20", f"{statistics.median(cam_ms[:20]):.2f} / "
                                                f"{statistics.median(cam_ms[-20:]):.2f} ms"),
                ])
        finally:
            for cam in cams.values():
                cam.close()
            runner.close()


if __name__ == "__main__":
    main()
