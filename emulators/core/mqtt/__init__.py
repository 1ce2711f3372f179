"""The farm's MQTT 3.1.1 wing: one codec (``packets``) that the broker, the client, the
benchmark and the tests share; the broker (``broker``: the listener, ``session``: one accepted
connection, ``connect``: reading a CONNECT) that cloud members drive through ``hooks``; the
devices' client (``client``); and what every member's device access shares (``access``: the
journal, faults, sessions and the requests that wait for a device's reply).
"""
