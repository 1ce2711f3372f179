"""The MQTT topics of EnOS device access (the SDK's ``DeliveryTopicFormat`` and
``ArrivedTopicPattern``): the only file that names them. A reply goes to the request's topic
plus ``_reply``, as ``{"id", "code", "data"}``."""

from __future__ import annotations

import re

# Upstream: /sys/{pk}/{dk}/<rest> or /ext/session/{pk}/{dk}/<rest>.
UPSTREAM = re.compile(r"/(?P<area>sys|ext/session)/(?P<pk>[^/]+)/(?P<dk>[^/]+)/(?P<rest>.+)")
MEASUREPOINT_POST = "thing/measurepoint/post"
MEASUREPOINT_POST_BATCH = "thing/measurepoint/post/batch"
MEASUREPOINT_RESUME = "thing/measurepoint/resume"
MEASUREPOINT_RESUME_BATCH = "thing/measurepoint/resume/batch"
EVENT_POST = re.compile(r"thing/event/(?P<event>[^/]+)/post")
ATTRIBUTE_UPDATE = "thing/attribute/update"
ATTRIBUTE_QUERY = "thing/attribute/query"
ATTRIBUTE_DELETE = "thing/attribute/delete"
SUB_LOGIN = "combine/login"
SUB_LOGIN_BATCH = "combine/login/batch"
SUB_LOGOUT = "combine/logout"
OTA_INFORM = "ota/device/inform"
OTA_GETVERSION = "ota/device/getversion"
OTA_REQUEST = "ota/device/request"
OTA_PROGRESS = "ota/device/progress"
ACTIVATE_INFO_REPLY = "thing/activate/info_reply"
SERVICE_REPLY = re.compile(r"thing/service/(?P<service>.+)_reply")


def reply_topic(topic: str) -> str:
    return topic + "_reply"


def service(product_key: str, device_key: str, service_id: str) -> str:
    """``thing/service/{id}``; ``measurepoint/set`` is the measure point set."""
    return f"/sys/{product_key}/{device_key}/thing/service/{service_id}"


def activate_info(product_key: str, device_key: str) -> str:
    return f"/ext/session/{product_key}/{device_key}/thing/activate/info"
