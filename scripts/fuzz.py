"""Long fuzzing run: the properties of tests/robustness/test_fuzz.py with many more examples and
fresh randomness each round, until a round fails or the time budget is spent.

    python scripts/fuzz.py                      # 10 minutes, 2,000 examples per property a round
    python scripts/fuzz.py --minutes 60 --examples 5000
    python scripts/fuzz.py --rounds 1 --examples 20000 -k iotda

Each round is one pytest run (its own farm) with FUZZ_EXAMPLES, FUZZ_RANDOM=1 and FUZZ_REPORT
set; the script prints the requests each property sent and exits 1 on the first failing round,
whose pytest output (with hypothesis' falsifying example) is shown in full. A failure found here
is reproduced in the suite by adding the example with ``@example`` to the property.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "robustness" / "test_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000,
                        help="examples per property per round (default 2000)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="stop starting new rounds after this long (default 10)")
    parser.add_argument("--rounds", type=int, default=None, help="at most this many rounds")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k: some properties")
    args = parser.parse_args(argv)

    totals: Counter[str] = Counter()
    started = time.monotonic()
    rounds = 0
    returncode = 0
    while True:
        if args.rounds is not None and rounds >= args.rounds:
            break
        if rounds and time.monotonic() - started > args.minutes * 60:
            break
        rounds += 1
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "tried.json"
            env = {**os.environ, "FUZZ_EXAMPLES": str(args.examples), "FUZZ_RANDOM": "1",
                   "FUZZ_REPORT": str(report)}
            command = [sys.executable, "-m", "pytest", str(TESTS), "-q", "-p", "no:cacheprovider",
                       "--timeout", "0", "-x"]
            if args.keyword:
                command += ["-k", args.keyword]
            round_started = time.monotonic()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            tried = Counter(json.loads(report.read_text())) if report.exists() else Counter()
        totals.update(tried)
        print(f"round {rounds}: {sum(tried.values())} requests in "
              f"{time.monotonic() - round_started:.0f} s, pytest exit {done.returncode}",
              flush=True)
        returncode = done.returncode
        if returncode != 0:
            print(done.stdout[-20000:], done.stderr[-5000:], sep="\n")
            break
    print(f"\n{rounds} round(s), {time.monotonic() - started:.0f} s")
    for name, count in sorted(totals.items()):
        print(f"  {name:20} {count:8d} requests")
    print(f"  {'total':20} {sum(totals.values()):8d} requests; "
          f"{'no failure' if returncode == 0 else 'FAILED (above)'}")
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
