"""Closing a paho client the tests started, without leaving its wake-up socket pair behind.

paho closes the socket pair ``loop_start()`` made only when ``loop_stop()`` finds its network
thread running; after the broker ended the session (a refusal, a displacement, a dropped or
revoked client, a stop) the thread has already gone, and the pair is left to the garbage
collector: a ResourceWarning in whichever test collects next. paho's private names for the
pair (paho 2.2) are named here only."""

from __future__ import annotations

from typing import Any

WAKE_UP_PAIR = ("_sockpairR", "_sockpairW")


def close_wake_up_pair(client: Any) -> None:
    """Close the socket pair paho's network loop left on ``client``, if any."""
    for name in WAKE_UP_PAIR:
        pair = getattr(client, name, None)
        if pair is not None:
            pair.close()
            setattr(client, name, None)


def close_paho(client: Any, *, started: bool = True) -> None:
    """Disconnect ``client``, stop the network loop it ``started`` and close its socket pair."""
    client.disconnect()
    if started:
        client.loop_stop()
    close_wake_up_pair(client)
