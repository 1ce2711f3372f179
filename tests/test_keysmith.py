"""`emulators run` has a forked child make its first RSA keys while it imports (keysmith).
Forking needs a process with no threads, so each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_child_makes_distinct_whole_rsa_keys_once_and_is_reaped() -> None:
    out = run_python("""
        import os
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from emulators import keysmith
        keysmith.start(3)
        child = keysmith._child
        keys = [serialization.load_pem_private_key(d, None) for d in keysmith.collect()]
        assert all(isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048 for k in keys)
        assert len({k.private_numbers().d for k in keys}) == 3
        assert keysmith.collect() == []
        try:
            os.waitpid(child, os.WNOHANG)
            print("child still ours")
        except ChildProcessError:
            print("reaped")
    """)
    assert out.strip() == "reaped"


def test_pki_hands_out_the_forked_keys_before_making_its_own() -> None:
    out = run_python("""
        import asyncio
        from emulators import keypool, keysmith, pki
        keysmith.start(3)
        keypool.POOL_SIZE = 0  # no refill: every key handed out must be one the child made
        made = []
        pki.rsa_key = lambda bits=2048: made.append(bits)  # would be called to make a key
        async def main():
            keys = [await keypool.arsa_key() for _ in range(3)]
            assert len({k.private_numbers().d for k in keys}) == 3
            return keys
        asyncio.run(main())
        print(len(made), len(keypool._pool))
    """)
    assert out.split() == ["0", "0"]
