"""Closing the vendors' SDK clients so that they leave no connection behind."""

from __future__ import annotations

from typing import Any


def close_iotda(client: Any) -> None:
    """Close an IoTDA SDK client (``huaweicloudsdkiotda``) and the connections it keeps alive.

    ``IoTDAClient.close()`` alone does not: it closes the SDK's requests session, which only
    drops the connection pools (since urllib3 1.26.16 and 2.0, ``PoolManager.clear`` leaves a
    pool to close its idle sockets when it is freed). After an SDK error the exceptions'
    tracebacks still reach the pool (urllib3's frames, the error replies), in reference
    cycles: the pool, and its keep-alive socket, live until the cyclic garbage collector
    runs. A leak check's gc.collect() cannot be relied on for that: it does nothing while
    another thread (the farm's loop) is in the middle of a collection. Close the pools first.
    """
    adapters = client.get_http_client()._session.adapters.values()
    for manager in [m for a in adapters for m in (a.poolmanager, *a.proxy_manager.values())]:
        for key in manager.pools.keys():
            pool = manager.pools.get(key)
            if pool is not None:
                pool.close()
    client.close()


# The device CA the default scenario's IoTDA member makes for its certificate device
# (``issue_certificate``): what ListCertificates shows on a fresh default farm.
DEFAULT_FARM_DEVICE_CAS = ["IoTDA Emulator Device CA 0a1b2c3d4e5f60718293a4b5"]
