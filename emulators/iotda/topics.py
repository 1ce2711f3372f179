"""The MQTT topics of IoTDA's device access: the only file that names them (as urls.py names
the REST paths). From the API reference's topic table (``api-iothub/iot_06_v5_3004.html``) and
the official device SDK's ``device_client.py``.
"""

from __future__ import annotations

import re

from ..core.mqtt.access import TopicTable


def base(device_id: str) -> str:
    return f"$oc/devices/{device_id}/"


# -- upstream (device -> platform): the part after $oc/devices/{device_id}/ ---------------------
PROPERTIES_REPORT = "sys/properties/report"
GATEWAY_REPORT = "sys/gateway/sub_devices/properties/report"
MESSAGES_UP = "sys/messages/up"
EVENTS_UP = "sys/events/up"
# request_id is the platform's (a response) or the device's (shadow/get).
RESPONSE = re.compile(r"sys/(?P<what>commands|properties/set|properties/get)/response/"
                      r"request_id=(?P<request_id>[^/]{1,128})")
SHADOW_GET = re.compile(r"sys/shadow/get/request_id=(?P<request_id>[^/]{1,128})")
UPSTREAM = re.compile(r"\$oc/devices/(?P<device_id>[^/]+)/(?P<rest>.+)")

# What each upstream topic does: the name of ``IotdaAccess``'s handler. Any other topic (a
# custom one, a gateway report) is journalled and nothing more.
HANDLERS = TopicTable([
    (PROPERTIES_REPORT, "on_properties_report"),
    (MESSAGES_UP, "on_message_up"),
    (EVENTS_UP, "on_event_up"),
    (RESPONSE, "on_response"),
    (SHADOW_GET, "on_shadow_get"),
])


# -- downstream (platform -> device) -----------------------------------------------------------
def messages_down(device_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/messages/down"


def command(device_id: str, request_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/commands/request_id={request_id}"


def properties_set(device_id: str, request_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/properties/set/request_id={request_id}"


def properties_get(device_id: str, request_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/properties/get/request_id={request_id}"


def shadow_response(device_id: str, request_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/shadow/get/response/request_id={request_id}"


def events_down(device_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/events/down"
