"""Crashes: SIGKILL the farm at random moments while files arrive and certificates
are issued, restart it on the same --state-dir, and check that nothing is half-written.

    python bench/crash.py [--kills 100] [--max-delay 0.6] [--seed 1] [--keep DIR]

Each round starts the farm (default scenario on free ports, state kept in one directory),
checks it, sets off a burst of operations from real clients (ftplib FTP/FTPS and asyncssh
SFTP uploads of up to 1 MiB, INSTAR testftp over FTPS and over SFTP, EnOS apply, IoTDA
add_certificate through the SDK, ACTi HTTPS_CER upload or HTTPS_CSR_CREATE), and SIGKILLs
the farm after a random delay.

Checked after every kill, before the restart: every state file is valid JSON. After every
restart: the farm comes up; every member's state is readable through the control plane; no
temporary file is left; and the state is the old or the new value, never a mix:
- every operation a client saw succeed before the kill is there (the upload with its
  SHA-256, the certSN, the IoTDA certificate id, the ACTi files);
- EnOS: certSNs are unique, none was handed out twice across kills, and the saved counter
  is above every issued certSN;
- ACTi: the files are the previous ones or the ones the last operation wrote; a certificate
  is never kept with a key that does not match it;
- servers: every received-file record names a file that is there, and the newest record of
  each path matches the file's size and SHA-256 (an interrupted upload is never recorded).
Exit status 1 when anything failed; the figures are printed either way.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Farm, launch, log_problems  # noqa: E402 - the sibling module
from load import (  # noqa: E402 - the sibling script, also when imported from the tests
    Client,
    Job,
    Material,
    Outcome,
    load_scenario,
)

TMP_MARKER = ".tmp-"
OPS = ("ftp_upload", "ftps_upload", "sftp_upload", "instar_testftp", "instar_sftp_testftp",
       "enos_apply", "iotda_add", "acti")
# Large enough that a kill often lands mid-transfer, small enough for a quick round.
MAX_UPLOAD = 1024 * 1024


def crash_scenario() -> dict[str, Any]:
    scenario = load_scenario()
    for entry in scenario["emulators"]:
        if entry["kind"] == "iotda":
            # One CA per round for 100 rounds: above the default quota of 100.
            entry["device_ca_quota"] = 1000
    # A second camera uploads its fixed-name Test-Snapshot.jpeg over SFTP: an overwrite cut
    # by a kill is where a record could end up pointing at a truncated file.
    scenario["emulators"].append({
        "name": "instar-sftp", "kind": "instar-camera", "port": 0, "upload_server": "sftp",
        "upload_user": "ipcamera",
        "ftp": {"ft_dirname": "recordings", "ft_dirmode": 0, "ft_insecure": 1,
                "ft_autocreatedir": 1}})
    return scenario


class CrashClient(Client):
    """The load clients' operations, plus what the crash checks need to know was done."""

    def payload(self) -> tuple[str, bytes]:
        name = f"crash-{self.job.seed}-{self.index}-{self.rng.getrandbits(48):012x}.bin"
        return name, self.rng.randbytes(self.rng.randint(1, MAX_UPLOAD))

    async def instar_sftp_testftp(self) -> None:
        status, body = await self.http(
            "GET", self.url("instar-sftp") + "/param.cgi?cmd=testftp&user=admin&pwd=instar")
        if status != 200 or 'result="0"' not in body.decode(errors="replace"):
            from load import Unexpected

            raise Unexpected("reply", f"{status} {body[:200]!r}")

    async def enos_apply(self) -> None:
        data = await self.enos_call("POST", "apply", {"csr": self.job.material.enos_csr,
                                                      "validDay": 30})
        self.outcome.acks.append(("enos", int(data["certSN"])))

    def _iotda_add(self) -> str:
        from huaweicloudsdkiotda.v5 import AddCertificateRequest, CreateCertificateDTO

        added = self.iotda_client().add_certificate(AddCertificateRequest(
            body=CreateCertificateDTO(content=self.job.material.iotda_ca)))
        return str(added.certificate_id)

    async def iotda_add(self) -> None:
        cert_id = await self.blocking(self._iotda_add)
        self.outcome.acks.append(("iotda", cert_id))

    async def acti(self) -> None:
        # Either flash-writing command: an upload of certSrv.pem or a new key and CSR.
        if self.rng.random() < 0.5:
            await self.acti_upload()
            self.outcome.acks.append(("acti", "upload"))
            return
        status, body = await self.http(
            "GET", self.url("acti-camera") + "/cgi-bin/update?USER=admin&PWD=123456"
            "&HTTPS_CSR_CREATE=TW,Taipei,Taipei,ACTi,QA,camera.test,1024")
        if status != 200 or not body.startswith(b"-----BEGIN CERTIFICATE REQUEST-----"):
            from load import Unexpected

            raise Unexpected("reply", f"{status} {body[:200]!r}")
        self.outcome.acks.append(("acti", "csr:" + body.decode().strip()))


def run_burst(ready: dict[str, Any], material: Material, seed: int, ops: list[str],
              outcome: Outcome, done: threading.Event, started: threading.Event) -> None:
    """One client per operation, all at once, in this thread's own event loop; ``started``
    is set when the burst begins (after priming, see below)."""

    async def main() -> None:
        job = Job(0, range(len(ops) + 1), 0, ready, material, seed)
        with ThreadPoolExecutor(max_workers=len(ops) + 1, thread_name_prefix="crash") as pool:
            clients = [CrashClient(i, job, pool, outcome) for i in range(len(ops) + 1)]
            try:
                primer = clients.pop()
                if "instar_sftp_testftp" in ops:
                    # The camera's first SFTP testftp after a start takes ~2 s (its SSH
                    # client warming up), longer than the kill delay: one untimed run first,
                    # so that the timed one can be caught mid-upload.
                    try:
                        await primer.instar_sftp_testftp()
                    except Exception as exc:  # noqa: BLE001 - shown with the cut operations
                        outcome.failures[f"priming testftp: {type(exc).__name__}"] += 1
                await primer.close()
                started.set()
                await asyncio.gather(*(run_one(c, op) for c, op in zip(clients, ops,
                                                                        strict=True)))
            finally:
                started.set()
                for client in clients:
                    await client.close()

    async def run_one(client: CrashClient, op: str) -> None:
        try:
            await getattr(client, op)()
        except Exception as exc:  # noqa: BLE001 - cut by the kill: not acknowledged
            outcome.failures[f"{op}: {type(exc).__name__}"] += 1
        else:
            outcome.ops[op] += 1

    try:
        asyncio.run(main())
    finally:
        done.set()


@dataclass
class Tally:
    kills: int = 0
    restarts: int = 0
    acked: Counter[str] = field(default_factory=Counter)
    cut: Counter[str] = field(default_factory=Counter)
    temp_files_left: int = 0
    partial_files: int = 0  # files of unrecorded uploads the kill interrupted (kept)
    problems: list[str] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)


class Expectations:
    """What must survive: every acknowledged operation, and what was seen before."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, str, str, str]] = []
        self.enos_sns: set[int] = set()
        self.enos_seen: set[int] = set()
        self.iotda_ids: set[str] = set()
        self.acti_files: dict[str, Any] | None = None
        self.acti_ack: str | None = None
        self.acti_attempted = False


def sha256_file(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def check_files(state_dir: Path, tally: Tally, round_no: int) -> None:
    """After a kill: every JSON state file parses; count temporary files left behind."""
    for path in state_dir.rglob("*.json"):
        if TMP_MARKER in path.name:
            continue
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:
            tally.problems.append(f"round {round_no}: {path.name} is not valid JSON: {exc}")
    tally.temp_files_left += sum(1 for p in state_dir.rglob(f"*{TMP_MARKER}*") if p.is_file())


def check_farm(farm: Farm, expect: Expectations, tally: Tally, round_no: int) -> None:
    """After a restart: readable state, nothing half-written, nothing acknowledged lost."""
    problems = tally.problems
    left = [str(p) for p in farm.state_dir.rglob(f"*{TMP_MARKER}*")]
    if left:
        problems.append(f"round {round_no}: temporary files not swept: {left[:3]}")
    states: dict[str, Any] = {}
    for entry in farm.ready["emulators"]:
        states[entry["name"]] = farm.get(f"/emulators/{entry['name']}/state")
    for entry in farm.ready["servers"]:
        states[entry["name"]] = farm.get(f"/servers/{entry['name']}/state")

    # Servers: records point at whole files; acknowledged uploads are all recorded.
    recorded: set[tuple[str, str, str, str]] = set()
    for server in ("ftp", "sftp"):
        users = {u["name"]: u["home"] for u in farm.member(server)["credentials"]["users"]}
        newest: dict[str, dict[str, Any]] = {}
        for rec in states[server]["received"]:
            recorded.add((server, rec["user"], rec["path"].rsplit("/", 1)[-1], rec["sha256"]))
            newest[f"{rec['user']}/{rec['path']}"] = rec
        for key, rec in newest.items():
            path = farm.state_dir / server / users[rec["user"]] / rec["path"]
            if not path.is_file():
                problems.append(f"round {round_no}: {server} record {key} has no file")
                continue
            size, digest = sha256_file(path)
            if (size, digest) != (rec["size"], rec["sha256"]):
                problems.append(f"round {round_no}: {server} {key} is {size} bytes on disk, "
                                f"recorded {rec['size']} (sha256 differs: "
                                f"{digest != rec['sha256']})")
    lost = [u for u in expect.uploads if u not in recorded]
    if lost:
        problems.append(f"round {round_no}: acknowledged uploads lost: {lost[:3]}")

    # EnOS: unique certSNs, acknowledged ones present, the counter above them all.
    sns = [int(c["cert_sn"]) for c in states["enos"]["certificates"]]
    if len(sns) != len(set(sns)):
        problems.append(f"round {round_no}: EnOS certSNs repeat: {sorted(sns)}")
    if not expect.enos_sns <= set(sns):
        problems.append(f"round {round_no}: EnOS certificates lost: "
                        f"{sorted(expect.enos_sns - set(sns))}")
    counter = json.loads((farm.state_dir / "_enos-cert-sn.json").read_text())["next"]
    if sns and counter <= max(sns):
        problems.append(f"round {round_no}: EnOS counter {counter} <= issued {max(sns)}")
    expect.enos_seen |= set(sns)

    # IoTDA: unique ids, acknowledged ones present.
    ids = [c["certificate_id"] for c in states["iotda"]["device_cas"]["records"]]
    if len(ids) != len(set(ids)):
        problems.append(f"round {round_no}: IoTDA certificate ids repeat")
    if not expect.iotda_ids <= set(ids):
        problems.append(f"round {round_no}: IoTDA certificates lost: "
                        f"{sorted(expect.iotda_ids - set(ids))[:3]}")

    # ACTi: the old files or the new ones; a certificate never with a foreign key. Read from
    # the state file the restarted farm loaded: the state view withholds the private key.
    # (No file yet: the camera has written nothing, its view is its whole state.)
    saved = farm.state_dir / "acti-camera.json"
    files = json.loads(saved.read_text())["https_files"] if saved.exists() \
        else states["acti-camera"]["https_files"]
    check_acti(files, expect, problems, round_no)
    expect.acti_files = files
    expect.acti_ack = None
    expect.acti_attempted = False


def check_acti(files: dict[str, Any], expect: Expectations, problems: list[str],
               round_no: int) -> None:
    from emulators import pki
    from emulators.acti.models import certificate_blocks

    if files.get("cert") and files.get("key"):
        cert = pki.load_cert(certificate_blocks(files["cert"])[0])
        if not pki.public_key_matches(cert, pki.load_key(files["key"])):
            problems.append(f"round {round_no}: ACTi certificate kept with a foreign key")
    if files.get("csr") and files.get("key") and files.get("key_source") == "csr":
        # An upload brings its own key and leaves the last CSR readable; only a key made
        # by HTTPS_CSR_CREATE must be the CSR's.
        csr = pki.load_csr(files["csr"])
        if csr.public_key().public_numbers() != pki.load_key(files["key"]).public_key() \
                .public_numbers():
            problems.append(f"round {round_no}: ACTi CSR kept with a foreign key")
    if expect.acti_ack == "upload":
        if files.get("cert") is None or files.get("key_source") == "csr":
            problems.append(f"round {round_no}: acknowledged ACTi upload lost: {files}")
    elif expect.acti_ack is not None and expect.acti_ack.startswith("csr:"):
        if (files.get("csr") or "").strip() != expect.acti_ack[4:] or files.get("cert"):
            problems.append(f"round {round_no}: acknowledged ACTi CSR lost")
    elif not expect.acti_attempted and expect.acti_files is not None \
            and files != expect.acti_files:
        problems.append(f"round {round_no}: ACTi files changed with no operation")


def crash_test(*, kills: int, max_delay: float, seed: int, state_dir: Path,
               ops_per_round: int = 8) -> Tally:
    rng = random.Random(seed)
    material = Material.make()
    scenario_path = state_dir.parent / "scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(crash_scenario()))
    ready_file, log_path = state_dir.parent / "ready.json", state_dir.parent / "farm.log"
    tally, expect = Tally(), Expectations()
    for round_no in range(1, kills + 2):
        started = time.monotonic()
        try:
            farm = launch(scenario_path, state_dir, ready_file, log_path)
        except RuntimeError as exc:
            tally.problems.append(f"round {round_no}: the farm did not restart: {exc}")
            break
        tally.startup_s.append(time.monotonic() - started)
        if round_no > 1:
            tally.restarts += 1
        try:
            check_farm(farm, expect, tally, round_no)
        except Exception as exc:  # noqa: BLE001 - a state that cannot be read is the finding
            tally.problems.append(f"round {round_no}: state unreadable: "
                                  f"{type(exc).__name__}: {exc}")
        if round_no > kills:  # the last start only checks what the last kill left
            farm.proc.send_signal(signal.SIGTERM)
            farm.proc.wait(30)
            break
        # Every round writes ACTi flash; every other one has a camera testftp over SFTP.
        others = [op for op in OPS if op not in ("acti", "instar_sftp_testftp")]
        ops = ["acti"] + [rng.choice(others) for _ in range(ops_per_round - 2)]
        ops.append("instar_sftp_testftp" if round_no % 2 == 0 else rng.choice(others))
        outcome, done, started_burst = Outcome(), threading.Event(), threading.Event()
        burst = threading.Thread(target=run_burst, name="crash-burst", daemon=True,
                                 args=(farm.ready, material, seed * 1000 + round_no, ops,
                                       outcome, done, started_burst))
        burst.start()
        started_burst.wait(60)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(farm.pid, signal.SIGKILL)
        farm.proc.wait()
        tally.kills += 1
        if not done.wait(120):
            tally.problems.append(f"round {round_no}: clients still running 120 s after the "
                                  "kill")
        burst.join(5)
        check_files(state_dir, tally, round_no)
        tally.acked.update(outcome.ops)
        tally.cut.update({k.split(":")[0]: v for k, v in outcome.failures.items()})
        expect.uploads.extend(outcome.uploads)
        expect.acti_attempted = True
        for kind, value in outcome.acks:
            if kind == "enos":
                if value in expect.enos_seen:
                    tally.problems.append(f"round {round_no}: EnOS handed out certSN {value} "
                                          "again")
                expect.enos_sns.add(value)
            elif kind == "iotda":
                expect.iotda_ids.add(value)
            elif kind == "acti":
                expect.acti_ack = value
    found = log_problems(log_path)
    # A kill cuts connections mid-request: the farm's own ERROR lines are findings, the
    # restarts' INFO lines are not.
    if found:
        tally.problems.append(f"{len(found)} problem lines in the farm's log: {found[:3]}")
    return tally


def show(tally: Tally, kills: int) -> None:
    print(f"\n== crash: {kills} SIGKILLs, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}")
    failed = {p.split(":")[0] for p in tally.problems if p.startswith("round ")}
    print(f"  kills {tally.kills}, restarts {tally.restarts}, rounds with a problem "
          f"{len(failed)}")
    start = sorted(tally.startup_s)
    if start:
        print(f"  start to ready: median {start[len(start) // 2]:.2f} s, max {start[-1]:.2f} s")
    print(f"  operations acknowledged before a kill: {dict(tally.acked)}")
    print(f"  operations cut by a kill: {dict(tally.cut)}")
    print(f"  temporary files a kill left (swept at the next start): {tally.temp_files_left}")
    print("  RESULT: " + ("ok, nothing lost" if not tally.problems else "FAILED"))
    for problem in tally.problems[:30]:
        print(f"    {problem[:400]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--max-delay", type=float, default=0.6,
                        help="kill at a random moment up to this many seconds into a burst")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this (new) folder and keep it: state, farm.log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tally = crash_test(kills=args.kills, max_delay=args.max_delay, seed=args.seed,
                           state_dir=work / "state")
    show(tally, args.kills)
    sys.exit(1 if tally.problems else 0)


if __name__ == "__main__":
    main()
