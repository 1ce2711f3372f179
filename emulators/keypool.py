"""RSA and EC keys made ahead of demand and off the event loop: the farm's one key pool.

The only process-global key state of the farm lives here (pki stays pure X.509): a small pool
of RSA-2048 keys refilled in the loop's executor, and the keys ``emulators run`` had a forked
child make while it imported (see keysmith). Every key is handed out once; none is reused.
Measured in bench/startup.py: the default farm's first start waits on no key generation.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import keysmith, pki

# Fresh RSA-2048 keys made ahead of demand, in the loop's executor: the next emulator that
# needs one (an EnOS root, a bound device certificate) starts in milliseconds instead of
# waiting a tenth of a second of CPU.
POOL_SIZE = 2
_pool: list[rsa.RSAPrivateKey] = []
_refilling = False


def _fill_pool() -> None:
    while len(_pool) < POOL_SIZE:
        _pool.append(pki.rsa_key(2048))


def _refill(loop: asyncio.AbstractEventLoop) -> None:
    global _refilling
    if _refilling or len(_pool) >= POOL_SIZE:
        return
    _refilling = True

    def done(_: object) -> None:
        global _refilling
        _refilling = False

    loop.run_in_executor(None, _fill_pool).add_done_callback(done)


_forked: asyncio.Future[None] | None = None


def _add_forked_keys() -> None:
    for pem in keysmith.collect():
        key = pki.load_key(pem, trusted=True)  # made by the farm's own child
        assert isinstance(key, rsa.RSAPrivateKey)
        _pool.append(key)


async def take_forked_keys() -> None:
    """Put the keys `emulators run` had a forked child make (see keysmith) in the pool,
    waiting for the child if it is still at work; at once when there is none."""
    global _forked
    if _forked is None:
        if not keysmith.started():
            return
        _forked = asyncio.get_running_loop().run_in_executor(None, _add_forked_keys)
    await asyncio.shield(_forked)


async def arsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    loop = asyncio.get_running_loop()
    if bits != 2048:
        return await loop.run_in_executor(None, pki.rsa_key, bits)
    await take_forked_keys()
    try:
        key = _pool.pop()
    except IndexError:
        key = await loop.run_in_executor(None, pki.rsa_key, bits)
    _refill(loop)
    return key


async def aec_key() -> ec.EllipticCurvePrivateKey:
    return await asyncio.get_running_loop().run_in_executor(None, pki.ec_key)
