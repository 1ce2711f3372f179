"""The paho names tests/mqtt_clients.py closes are still where paho keeps its wake-up socket
pair: this fails when a paho release renames them (and the clean-up would silently find
nothing to close)."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_clients import WAKE_UP_PAIR, close_wake_up_pair


def test_the_wake_up_pair_is_made_by_the_loop_and_closed_by_the_clean_up() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    # Not connected: loop() makes the pair, then returns without touching the network.
    assert client.loop(0.0) == mqtt.MQTT_ERR_NO_CONN
    pair = [getattr(client, name) for name in WAKE_UP_PAIR]
    assert all(isinstance(end, socket.socket) and end.fileno() >= 0 for end in pair)
    close_wake_up_pair(client)
    assert [getattr(client, name) for name in WAKE_UP_PAIR] == [None, None]
    assert [end.fileno() for end in pair] == [-1, -1]
