"""Bad input to the device-management API: each gets IoTDA's error form, never a 500, and
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from emulators.testing import MemberHandle

from .clients import OPTIONS, PROJECT, TOKEN

SHA1 = "a1" * 20
SCENARIO = {
    **OPTIONS,
    "products": [{"product_id": "camera", "name": "Camera"}],
    "devices": [
        {"node_id": "cam-1", "product_id": "camera"},
        {"node_id": "cam-2", "product_id": "camera", "device_id": "cert-cam",
         "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": SHA1}},
    ],
}
DEV = "devices/camera_cam-1"
BAD = (400, "IOTDA.000006")
FORMAT = (400, "IOTDA.000008")
LIMIT = (400, "IOTDA.000017")
NO_DEVICE = (404, "IOTDA.014000")
NO_PRODUCT = (404, "IOTDA.014003")
EXISTS = (409, "IOTDA.014002")
NO_PATH = (404, "IOTDA.000029")
OFFLINE = (403, "IOTDA.014016")
LONG = "x" * 300


def dev(**extra: Any) -> dict[str, Any]:
    return {"node_id": "new-1", "product_id": "camera", **extra}


def product(**extra: Any) -> dict[str, Any]:
    return {"name": "P", "device_type": "D", "protocol_type": "MQTT",
            "service_capabilities": [{"service_id": "s"}], **extra}


# (id, method, path under /v5/iot/{project}/, body (object -> JSON, bytes as is), expected)
ROWS: list[tuple[str, str, str, Any, tuple[int, str]]] = [
    # products
    ("product-no-name", "POST", "products", product(name=None), BAD),
    ("product-name-not-string", "POST", "products", product(name=7), BAD),
    ("product-bad-protocol", "POST", "products", product(protocol_type="X.25"), BAD),
    ("product-bad-format", "POST", "products", product(data_format="xml"), BAD),
    ("product-no-capabilities", "POST", "products", product(service_capabilities=[]), BAD),
    ("product-capability-no-id", "POST", "products",
     product(service_capabilities=[{"service_type": "s"}]), BAD),
    ("product-capability-not-object", "POST", "products",
     product(service_capabilities=["s"]), BAD),
    ("product-id-bad-chars", "POST", "products", product(product_id="a/b"), BAD),
    ("product-id-taken", "POST", "products", product(product_id="camera"), (409, "IOTDA.014004")),
    ("product-unknown", "GET", "products/nope", None, NO_PRODUCT),
    ("product-id-too-long", "GET", "products/" + "p" * 37, None, BAD),
    ("product-body-not-json", "POST", "products", b"{", FORMAT),
    # add device
    ("device-no-node", "POST", "devices", {"product_id": "camera"}, BAD),
    ("device-node-empty", "POST", "devices", dev(node_id=""), BAD),
    ("device-node-too-long", "POST", "devices", dev(node_id="n" * 65), BAD),
    ("device-node-not-string", "POST", "devices", dev(node_id=12), BAD),
    ("device-node-bad-chars", "POST", "devices", dev(node_id="a b"), BAD),
    ("device-no-product", "POST", "devices", {"node_id": "n"}, BAD),
    ("device-unknown-product", "POST", "devices", dev(product_id="nope"), NO_PRODUCT),
    ("device-id-taken", "POST", "devices", dev(device_id="cert-cam"), EXISTS),
    ("device-node-taken", "POST", "devices", dev(node_id="cam-1", device_id="x-1"), EXISTS),
    ("device-name-too-long", "POST", "devices", dev(device_name=LONG), BAD),
    ("device-name-control-char", "POST", "devices", dev(device_name="a\nb"), BAD),
    ("device-auth-not-object", "POST", "devices", dev(auth_info="SECRET"), BAD),
    ("device-auth-type-unknown", "POST", "devices", dev(auth_info={"auth_type": "PSK"}), BAD),
    ("device-secret-short", "POST", "devices", dev(auth_info={"secret": "short"}), BAD),
    ("device-secret-long", "POST", "devices", dev(auth_info={"secret": "s" * 33}), BAD),
    ("device-secret-with-certificates", "POST", "devices",
     dev(auth_info={"auth_type": "CERTIFICATES", "secret": "secret123"}), BAD),
    ("device-fingerprint-with-secret", "POST", "devices",
     dev(auth_info={"auth_type": "SECRET", "fingerprint": SHA1}), BAD),
    ("device-fingerprint-39", "POST", "devices",
     dev(auth_info={"auth_type": "CERTIFICATES", "fingerprint": "a" * 39}), BAD),
    ("device-fingerprint-not-hex", "POST", "devices",
     dev(auth_info={"auth_type": "CERTIFICATES", "fingerprint": "g" * 40}), BAD),
    ("device-secure-access-string", "POST", "devices",
     dev(auth_info={"secure_access": "yes"}), BAD),
    ("device-timeout-negative", "POST", "devices", dev(auth_info={"timeout": -1}), BAD),
    ("device-timeout-bool", "POST", "devices", dev(auth_info={"timeout": True}), BAD),
    ("device-timeout-huge", "POST", "devices", dev(auth_info={"timeout": 2**40}), BAD),
    ("device-extension-not-object", "POST", "devices", dev(extension_info=[1]), BAD),
    ("device-gateway-sub-device", "POST", "devices", dev(gateway_id="camera_cam-1"), BAD),
    ("device-body-array", "POST", "devices", b"[]", FORMAT),
    ("device-body-deep", "POST", "devices", b"[" * 100_000 + b"]" * 100_000, FORMAT),
    # show / list / update / delete
    ("show-unknown", "GET", "devices/nope", None, NO_DEVICE),
    ("show-id-too-long", "GET", "devices/" + "d" * 129, None, BAD),
    ("show-id-bad-chars", "GET", "devices/a%20b", None, BAD),
    ("list-limit-zero", "GET", "devices?limit=0", None, LIMIT),
    ("list-limit-51", "GET", "devices?limit=51", None, LIMIT),
    ("list-limit-text", "GET", "devices?limit=ten", None, LIMIT),
    ("list-offset-negative", "GET", "devices?offset=-1", None, BAD),
    ("list-marker-short", "GET", "devices?marker=abc", None, BAD),
    ("list-product-bad", "GET", "devices?product_id=a%2Fb", None, BAD),
    ("update-unknown", "PUT", "devices/nope", {"device_name": "x"}, NO_DEVICE),
    ("update-name-number", "PUT", DEV, {"device_name": 5}, BAD),
    ("update-timeout-text", "PUT", DEV, {"auth_info": {"timeout": "60"}}, BAD),
    ("update-body-not-json", "PUT", DEV, b"nope", FORMAT),
    ("delete-unknown", "DELETE", "devices/nope", None, NO_DEVICE),
    ("freeze-unknown", "POST", "devices/nope/freeze", None, NO_DEVICE),
    ("unfreeze-unknown", "POST", "devices/nope/unfreeze", None, NO_DEVICE),
    ("freeze-get", "GET", DEV + "/freeze", None, NO_PATH),
    # secrets and fingerprints
    ("reset-secret-no-action", "POST", DEV + "/action", {}, BAD),
    ("reset-secret-wrong-action", "POST", DEV + "/action?action_id=reset", {}, BAD),
    ("reset-secret-short", "POST", DEV + "/action?action_id=resetSecret",
     {"secret": "abc"}, BAD),
    ("reset-secret-type", "POST", DEV + "/action?action_id=resetSecret",
     {"secret_type": "TERTIARY"}, BAD),
    ("reset-secret-force-text", "POST", DEV + "/action?action_id=resetSecret",
     {"force_disconnect": "true"}, BAD),
    ("reset-secret-cert-device", "POST", "devices/cert-cam/action?action_id=resetSecret",
     {}, BAD),
    ("reset-secret-unknown", "POST", "devices/nope/action?action_id=resetSecret", {},
     NO_DEVICE),
    ("reset-fingerprint-bad", "POST", "devices/cert-cam/reset-fingerprint",
     {"fingerprint": "xyz"}, BAD),
    ("reset-fingerprint-type", "POST", "devices/cert-cam/reset-fingerprint",
     {"fingerprint_type": "BOTH"}, BAD),
    ("reset-fingerprint-secret-device", "POST", DEV + "/reset-fingerprint",
     {"fingerprint": SHA1}, BAD),
    # shadow
    ("shadow-unknown", "GET", "devices/nope/shadow", None, NO_DEVICE),
    ("shadow-no-list", "PUT", DEV + "/shadow", {"shadow": {}}, BAD),
    ("shadow-empty-list", "PUT", DEV + "/shadow", {"shadow": []}, BAD),
    ("shadow-entry-not-object", "PUT", DEV + "/shadow", {"shadow": [1]}, BAD),
    ("shadow-no-service", "PUT", DEV + "/shadow", {"shadow": [{"desired": {}}]}, BAD),
    ("shadow-desired-list", "PUT", DEV + "/shadow",
     {"shadow": [{"service_id": "s", "desired": [1]}]}, BAD),
    ("shadow-version-wrong", "PUT", DEV + "/shadow",
     {"shadow": [{"service_id": "s", "desired": {"a": 1}, "version": 5}]}, BAD),
    ("shadow-version-text", "PUT", DEV + "/shadow",
     {"shadow": [{"service_id": "s", "desired": {"a": 1}, "version": "0"}]}, BAD),
    ("shadow-second-entry-bad", "PUT", DEV + "/shadow",
     {"shadow": [{"service_id": "s", "desired": {"a": 1}}, {"service_id": ""}]}, BAD),
    # messages and commands
    ("message-none", "POST", DEV + "/messages", {}, BAD),
    ("message-bool", "POST", DEV + "/messages", {"message": True}, BAD),
    ("message-encoding", "POST", DEV + "/messages", {"message": "m", "encoding": "gzip"}, BAD),
    ("message-ttl", "POST", DEV + "/messages", {"message": "m", "ttl": 5000}, BAD),
    ("message-unknown-device", "POST", "devices/nope/messages", {"message": "m"}, NO_DEVICE),
    ("messages-unknown-device", "GET", "devices/nope/messages", None, NO_DEVICE),
    ("command-paras-missing", "POST", DEV + "/commands", {"service_id": "s"}, BAD),
    ("command-paras-text", "POST", DEV + "/commands", {"paras": "x"}, BAD),
    ("command-offline", "POST", DEV + "/commands", {"paras": {}}, OFFLINE),
]


@pytest.fixture
def iotda_with_devices(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    return emulator_factory("iotda", **SCENARIO)


def call(url: str, method: str, path: str, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return requests.request(method, f"{url}/v5/iot/{PROJECT}/{path}", data=data, timeout=10,
                            headers={"X-Auth-Token": TOKEN, "Content-Type": "application/json"})


@pytest.mark.parametrize(("method", "path", "body", "expected"),
                         [pytest.param(*r[1:], id=r[0]) for r in ROWS])
def test_bad_input_gets_the_vendor_error(iotda_with_devices: MemberHandle, method: str,
                                         path: str, body: Any,
                                         expected: tuple[int, str]) -> None:
    before = iotda_with_devices.state()
    reply = call(iotda_with_devices.url, method, path, body)
    doc = reply.json()
    assert (reply.status_code, doc["error_code"]) == expected, doc
    assert isinstance(doc["error_msg"], str) and doc["error_msg"]
    assert len(reply.headers["X-Request-Id"]) == 32
    assert iotda_with_devices.state() == before


def test_default_device_id_too_long_is_invalid(iotda_with_devices: MemberHandle) -> None:
    # The longest default id: product id (36) + "_" + node id (64), within device_id's 128.
    long_product = "p" * 36
    call(iotda_with_devices.url, "POST", "products", product(product_id=long_product))
    reply = call(iotda_with_devices.url, "POST", "devices",
                 {"node_id": "n" * 64, "product_id": long_product})
    assert reply.status_code == 201  # 101 characters: within 128
    assert reply.json()["device_id"] == f"{long_product}_{'n' * 64}"
