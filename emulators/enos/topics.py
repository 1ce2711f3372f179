"""The MQTT topics of EnOS device access (the SDK's ``DeliveryTopicFormat`` and
``ArrivedTopicPattern``): the only file that names them. A reply goes to the request's topic
plus ``_reply``, as ``{"id", "code", "data"}``."""

from __future__ import annotations

import re

from ..core.mqtt.access import TopicTable

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

# What each upstream request does: the name of ``EnosAccess``'s handler, which gives the
# reply's data and code (or None: no reply). Any other topic, ``ACTIVATE_INFO_REPLY`` among
# them, is journalled and nothing more.
HANDLERS = TopicTable([
    (MEASUREPOINT_POST, "on_measure_points"),
    (MEASUREPOINT_RESUME, "on_measure_points"),
    (MEASUREPOINT_POST_BATCH, "on_measure_points_batch"),
    (MEASUREPOINT_RESUME_BATCH, "on_measure_points_batch"),
    (EVENT_POST, "on_event"),
    (ATTRIBUTE_UPDATE, "on_attribute_update"),
    (ATTRIBUTE_QUERY, "on_attribute_query"),
    (ATTRIBUTE_DELETE, "on_attribute_delete"),
    (SUB_LOGIN, "on_sub_login"),
    (SUB_LOGIN_BATCH, "on_sub_login"),
    (SUB_LOGOUT, "on_sub_logout"),
    (OTA_INFORM, "on_ota_inform"),
    (OTA_GETVERSION, "on_ota_query"),
    (OTA_REQUEST, "on_ota_query"),
    (OTA_PROGRESS, "on_ota_progress"),
    (SERVICE_REPLY, "on_service_reply"),
])


def reply_topic(topic: str) -> str:
    return topic + "_reply"


def service(product_key: str, device_key: str, service_id: str) -> str:
    """``thing/service/{id}``; ``measurepoint/set`` is the measure point set."""
    return f"/sys/{product_key}/{device_key}/thing/service/{service_id}"


def activate_info(product_key: str, device_key: str) -> str:
    return f"/ext/session/{product_key}/{device_key}/thing/activate/info"
