"""The IoTDA member saves its devices from encodings kept between saves
(``DeviceStore.encoded``): after every kind of change the saved document must be exactly what
encoding the whole state would give, or a restart would bring back an old device."""

from __future__ import annotations

import json
from typing import Any

from emulators.core.state import encode_document, encode_state
from emulators.iotda.models import DeviceStore
from emulators.iotda.models.common import IdSource

P = "project-1"


def saved(store: DeviceStore) -> Any:
    return json.loads(encode_document({"devices": store.encoded.parts()}))["devices"]


def whole(store: DeviceStore) -> Any:
    return json.loads(encode_state(store.dump()[1]))


def test_every_change_of_a_device_reaches_the_saved_encoding() -> None:
    store = DeviceStore(default_app_id="default", ids=IdSource())
    store.add_product(P, {"product_id": "cam", "name": "Cam", "device_type": "Camera",
                          "protocol_type": "MQTT",
                          "service_capabilities": [{"service_id": "Ptz"}]}, 1.0)
    steps: list[tuple[str, Any]] = []

    def step(name: str, action: Any) -> None:
        action()
        steps.append((name, None))
        # Compare as sets of records: the saved list is in key order, dump() in dict order.
        assert sorted(map(json.dumps, saved(store))) == sorted(map(json.dumps, whole(store))), \
            name
        # And what a restart loads is what was there.
        again = DeviceStore(default_app_id="default", ids=IdSource())
        again.load([], saved(store))
        assert sorted(map(json.dumps, whole(again))) == sorted(map(json.dumps, whole(store))), \
            name

    step("add", lambda: store.add_device(P, {"node_id": "a", "product_id": "cam",
                                            "auth_info": {"secret": "Secret0001"}}, 2.0))
    step("add cert", lambda: store.add_device(P, {"node_id": "b", "product_id": "cam",
                                                 "auth_info": {"auth_type": "CERTIFICATES"}},
                                              3.0))
    a = store.find("cam_a")
    b = store.find("cam_b")
    assert a is not None and b is not None
    step("update", lambda: store.update_device(P, "cam_a", {"device_name": "renamed"}))
    step("freeze", lambda: store.set_frozen(P, "cam_a", True))
    step("unfreeze", lambda: store.set_frozen(P, "cam_a", False))
    step("secret", lambda: store.reset_secret(P, "cam_a", {"secret": "Secret0002"}))
    step("fingerprint", lambda: store.reset_fingerprint(P, "cam_b", {"fingerprint": "ab" * 20}))
    step("desired", lambda: store.update_desired(P, "cam_a", {"shadow": [
        {"service_id": "Ptz", "desired": {"pan": 1}}]}, 4.0))
    step("online", lambda: store.went_online(b, 5.0, "cd" * 20))
    step("report", lambda: store.report(a, [{"service_id": "Ptz", "properties": {"pan": 2}}],
                                        6.0))
    step("message up", lambda: store.keep_received(a, {"payload": "x"}))
    step("message down", lambda: store.create_message(P, "cam_a", {"message": "m"}, 7.0))
    step("delivered", lambda: store.message_done(a, a.messages[-1], "DELIVERED", 8.0))
    step("message for later", lambda: store.create_message(P, "cam_a", {"message": "n",
                                                                        "ttl": 5}, 9.0))
    step("timed out", lambda: store.due_messages(a, 9.0 + 301))
    step("offline", lambda: store.went_offline(b, 10.0))
    step("delete", lambda: store.delete_device(P, "cam_b"))
    step("add again", lambda: store.add_device(P, {"node_id": "b", "product_id": "cam"}, 11.0))
    assert len(steps) == 18
