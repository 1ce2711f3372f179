"""Messages and commands: messages down to a device (kept until delivered or their ttl runs
out), messages the device sent up, and the commands and property requests the platform sends
to an online device.

The records are kept in the device (``Device.messages``, ``Device.received``), saved with it.
No HTTP and no MQTT here.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from typing import Any

from ..exceptions import DeviceOffline, InvalidInput
from .common import (
    DEVICE_ID,
    NAME,
    SERVICE_ID,
    choice_field,
    int_field,
    now_text,
    object_field,
    text_field,
)
from .devices import Device, Registry
from .shadow import PROPERTIES, check_services

MESSAGES_KEPT = 20  # spec: ListDeviceMessages keeps the last 20 per device
# Chosen: a message is cached for an offline device at most a day ("最长缓存时间24小时"), the
# whole day when the request gives no ttl.
DEFAULT_TTL_MINUTES = 1440
# What ListDeviceMessages shows of a message.
LISTED = ("message_id", "name", "message", "encoding", "payload_format", "topic",
          "properties", "status", "error_info", "created_time", "finished_time")


class Messages:
    """What goes down to a device and what it sent up."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # Told of each message's final status (data forwarding's device.message.status).
        self.status_changed: Callable[[Device, dict[str, Any]], None] | None = None

    def keep_received(self, device: Device, record: dict[str, Any]) -> None:
        device.received.append(record)
        del device.received[:-MESSAGES_KEPT]
        self.registry.touch(device)

    def create_message(self, project_id: str, device_id: str, body: dict[str, Any],
                       now: float) -> dict[str, Any]:
        device = self.registry.device(project_id, device_id)
        message_id = text_field(body, "message_id", required=False, max_len=100,
                                pattern=DEVICE_ID)
        name = text_field(body, "name", required=False, max_len=128, pattern=NAME)
        message = body.get("message")
        if message is None or isinstance(message, bool) or not isinstance(
                message, (str, dict, list, int, float)):
            raise InvalidInput("message is required")
        encoding = choice_field(body, "encoding", ("none", "base64"), "none")
        payload_format = choice_field(body, "payload_format", ("standard", "raw"), "standard")
        topic = text_field(body, "topic", required=False, max_len=128, pattern=NAME)
        topic_full_name = text_field(body, "topic_full_name", required=False, max_len=128,
                                     pattern=NAME)
        properties = object_field(body, "properties")
        ttl = int_field(body, "ttl", 0, 1440)
        if message_id is not None and any(m["message_id"] == message_id
                                          for m in device.messages):
            raise InvalidInput(f"message_id {message_id} is already used")
        record = {
            "message_id": message_id or str(uuid.uuid4()), "name": name, "message": message,
            "encoding": encoding, "payload_format": payload_format,
            "topic": topic_full_name or topic, "properties": properties, "ttl": ttl,
            "status": "PENDING", "error_info": None, "created_time": now_text(now),
            "finished_time": None,
            # Not shown by ListDeviceMessages: where and until when it is delivered.
            "mqtt_topic": (topic_full_name if topic_full_name is not None
                           else f"$oc/devices/{device.device_id}/user/{topic}"
                           if topic is not None
                           else f"$oc/devices/{device.device_id}/sys/messages/down"),
            "expires": now + 60 * (DEFAULT_TTL_MINUTES if ttl is None else ttl)}
        device.messages.append(record)
        del device.messages[:-MESSAGES_KEPT]
        self.registry.touch(device)
        return record

    @staticmethod
    def message_payload(device: Device, record: dict[str, Any]) -> bytes:
        """What the device receives: the SDK's ``DeviceMessage`` (``object_device_id``,
        ``id``, ``name``, ``content``) in the standard format, the message itself when raw."""
        message = record["message"]
        if record["payload_format"] == "raw":
            if isinstance(message, str):
                if record["encoding"] == "base64":
                    try:
                        return base64.b64decode(message, validate=True)
                    except (binascii.Error, ValueError):
                        return message.encode()
                return message.encode()
            return json.dumps(message, ensure_ascii=False).encode()
        return json.dumps({"object_device_id": device.device_id, "id": record["message_id"],
                           "name": record["name"], "content": message},
                          ensure_ascii=False).encode()

    def message_done(self, device: Device, record: dict[str, Any], status: str, now: float,
                     error: tuple[str, str] | None = None) -> None:
        self.registry.touch(device)
        record["status"] = status
        record["finished_time"] = now_text(now)
        if error is not None:
            record["error_info"] = {"error_code": error[0], "error_msg": error[1]}
        if self.status_changed is not None:
            self.status_changed(device, record)

    def due_messages(self, device: Device, now: float) -> list[dict[str, Any]]:
        """The PENDING messages to deliver now that the device is online; those whose ttl ran
        out on the farm clock become TIMEOUT."""
        due = []
        for record in device.messages:
            if record["status"] != "PENDING":
                continue
            if record.get("expires", now) < now:
                self.message_done(device, record, "TIMEOUT", now)
            else:
                due.append(record)
        return due

    def list_messages(self, project_id: str, device_id: str) -> dict[str, Any]:
        device = self.registry.device(project_id, device_id)
        return {"device_id": device.device_id,
                "messages": [{k: m[k] for k in LISTED} for m in device.messages]}

    # -- commands and properties, to an online device -------------------------------------------
    def create_command(self, project_id: str, device_id: str, body: dict[str, Any]
                       ) -> tuple[Device, dict[str, Any]]:
        """The device and the command as the SDK's ``Command`` carries it (``service_id``,
        ``command_name``, ``paras``; ``object_device_id`` is added when sent)."""
        device = self.registry.device(project_id, device_id)
        service_id = text_field(body, "service_id", required=False, max_len=64,
                                pattern=SERVICE_ID)
        command_name = text_field(body, "command_name", required=False, max_len=128,
                                  pattern=NAME)
        if not isinstance(body.get("paras"), dict):
            raise InvalidInput("paras must be an object")
        if not device.online:
            raise DeviceOffline(device_id)
        return device, {"service_id": service_id, "command_name": command_name,
                        "paras": body["paras"]}

    def properties_set(self, project_id: str, device_id: str, body: dict[str, Any]
                       ) -> tuple[Device, list[dict[str, Any]]]:
        """UpdateProperties: ``{"services": [{"service_id", "properties"}]}``, checked."""
        device = self.registry.device(project_id, device_id)
        checked = [{"service_id": service_id, "properties": properties}
                   for service_id, properties in check_services(body, PROPERTIES)]
        if not device.online:
            raise DeviceOffline(device_id)
        return device, checked

    def properties_get(self, project_id: str, device_id: str, service_id: str | None
                       ) -> Device:
        device = self.registry.device(project_id, device_id)
        if service_id is not None and not SERVICE_ID.fullmatch(service_id):
            raise InvalidInput(f"service_id {service_id!r}")
        if not device.online:
            raise DeviceOffline(device_id)
        return device
