"""An emulated IoTDA device: it connects to an IoTDA member of the farm over real MQTT(S) as
the vendor's Python device SDK does, reports properties, and answers what the platform sends.
A fleet of them (``count: N``) connects by itself, for demos and for load on a client that
watches the platform.

What it answers (README.md):
- a command: ``{"result_code": 0, "response_name": "COMMAND_RESPONSE", "paras":
  {"result": "success"}}`` (the API reference's sample response);
- a property set: takes the properties of its service, answers the SDK's ``IotResult``
  SUCCESS ``{"result_code": 0, "result_desc": "Success"}`` and reports them;
- a property get: its properties of the asked service;
- a message: kept (the last 20, in its state).
It reconnects as the SDK does (back-off from 1 s doubling to 30 s) except after CONNACK 4,
where the SDK gives up; so does it, and says so in its description.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import ssl
import time
from typing import TYPE_CHECKING, Any

from .. import pki
from ..core.member import Member
from ..core.mqtt.client import MqttClient, MqttRefused
from ..core.tasks import cancel_and_wait
from ..iotda import topics
from ..iotda.exceptions import IotdaError
from .options import IotdaDeviceOptions

if TYPE_CHECKING:
    from ..iotda.emulator import IotdaService

log = logging.getLogger("emulators.iotda_device")

MESSAGES_KEPT = 20
COMMAND_RESPONSE = {"result_code": 0, "response_name": "COMMAND_RESPONSE",
                    "paras": {"result": "success"}}
SET_RESPONSE = {"result_code": 0, "result_desc": "Success"}
BAD_CREDENTIALS = 4


def node_id_for(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:64]


class IotdaDevice(Member):
    kind = "iotda-device"
    role = "emulator"
    title = "IoTDA MQTT device"
    Options = IotdaDeviceOptions
    member_refs = {"cloud": "iotda"}

    options: IotdaDeviceOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node_id = self.options.node_id or node_id_for(self.name)
        self.device_id = f"{self.options.product_id}_{self.node_id}"
        self.properties: dict[str, Any] = {}
        self.received: list[dict[str, Any]] = []
        # "connecting", "connected", "refused" (CONNACK 4: given up), "stopped"
        self.link: dict[str, Any] = {"state": "stopped"}
        self._task: asyncio.Task[None] | None = None

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {"properties": dict(self.options.properties), "received": []}

    def load_state(self, data: dict[str, Any]) -> None:
        self.properties = dict(data["properties"])
        self.received = list(data.get("received", []))

    def dump_state(self) -> dict[str, Any]:
        return {"properties": self.properties, "received": self.received}

    def extra_description(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "cloud": self.options.cloud, "link": dict(self.link)}

    def credentials(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "secret": self.options.secret}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.restore_saved()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self.link = {"state": "stopped"}
        await self.ctx.store.flush(self.name)

    async def state_changed(self) -> None:
        """A reset or restore: the device reconnects with its new state."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task is not self._task:
            return
        exc = task.exception()
        if exc is not None:  # a bug of ours: the farm restarts the member or says so
            self.report_failure(f"the device's MQTT loop ended: {exc!r}")

    # -- the connection ------------------------------------------------------------------------
    def cloud(self) -> IotdaService:
        from ..iotda.emulator import IotdaService

        if self.ctx.lookup is None:
            raise LookupError("no farm to find the cloud in")
        member = self.ctx.lookup(self.options.cloud)
        if not isinstance(member, IotdaService):
            raise LookupError(f"{self.options.cloud!r} is not an iotda member")
        return member

    async def register(self, cloud: IotdaService) -> None:
        """AddDevice on the cloud's first project, with this device's secret, if missing."""
        await cloud.register_device(
            device_id=self.device_id, node_id=self.node_id, product_id=self.options.product_id,
            device_name=self.name, secret=self.options.secret, secure_access=self.options.tls)

    def _client(self, cloud: IotdaService) -> MqttClient:
        host, port = cloud.mqtt_address(self.options.tls)
        now = self.clock.time() + self.options.clock_offset
        timestamp = time.strftime("%Y%m%d%H", time.gmtime(now))
        check = "1" if self.options.check_timestamp else "0"
        tls = None
        if self.options.tls:
            tls = pki.client_context(self.ctx.ca.pem)
            tls.check_hostname = False  # the SDK's tls_insecure_set(True)
        client = MqttClient(
            host, port, client_id=f"{self.device_id}_0_{check}_{timestamp}",
            username=self.device_id, password=cloud.device_password(self.options.secret, timestamp),
            keep_alive=self.options.keep_alive, tls=tls)
        client.on_message = functools.partial(self._on_message, client)
        return client

    async def _run(self) -> None:
        backoff = self.options.min_backoff
        while True:
            self.link = {"state": "connecting"}
            client: MqttClient | None = None
            try:
                cloud = self.cloud()
                if self.options.auto_register:
                    await self.register(cloud)
                client = self._client(cloud)
                await client.connect()
                self.link = {"state": "connected", "since": self.clock.time()}
                backoff = self.options.min_backoff
                await self._session(client)
            except MqttRefused as exc:
                if exc.code == BAD_CREDENTIALS:
                    self.link = {"state": "refused", "reason": str(exc)}
                    log.warning("%s: refused with bad credentials; not retrying", self.name)
                    return
                self.link = {"state": "connecting", "last_error": str(exc)}
            except (OSError, LookupError, TimeoutError, ssl.SSLError) as exc:
                self.link = {"state": "connecting", "last_error": str(exc) or repr(exc)}
            except IotdaError as exc:  # the cloud refused the registration (bad options)
                self.link = {"state": "connecting", "last_error": f"{exc.code}: {exc.detail}"}
            finally:
                if client is not None:
                    await client.close()
            await asyncio.sleep(backoff * (1 + random.random() / 4))  # noqa: S311  # jitter
            backoff = min(backoff * 2, self.options.max_backoff)

    async def _session(self, client: MqttClient) -> None:
        # Custom topics (CreateMessage's ``topic``) need a subscription; system topics not.
        reader = asyncio.get_running_loop().create_task(client.run())
        try:
            await client.subscribe(f"{topics.base(self.device_id)}user/#", 1)
            while not reader.done():
                await self.report(client)
                await asyncio.wait({reader}, timeout=self.options.report_seconds)
            await reader  # raises why the connection ended
        finally:
            await cancel_and_wait(reader)

    async def report(self, client: MqttClient) -> None:
        await client.publish(f"{topics.base(self.device_id)}{topics.PROPERTIES_REPORT}",
                             json.dumps({"services": [{"service_id": self.options.service_id,
                                                       "properties": self.properties}]}), 1)

    async def _on_message(self, client: MqttClient, topic: str, payload: bytes) -> None:
        try:
            await self._answer(client, topic, payload)
        except (ConnectionError, TimeoutError):
            pass  # the connection ended meanwhile; the loop reconnects

    async def _answer(self, client: MqttClient, topic: str, payload: bytes) -> None:
        base = topics.base(self.device_id)
        if not topic.startswith(base):
            return
        rest = topic[len(base):]
        request_id = rest.split("request_id=")[-1] if "request_id=" in rest else None
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        if rest.startswith("sys/commands/request_id=") and request_id:
            await client.publish(f"{base}sys/commands/response/request_id={request_id}",
                                 json.dumps(COMMAND_RESPONSE), 1)
        elif rest.startswith("sys/properties/set/request_id=") and request_id:
            services = doc.get("services") if isinstance(doc, dict) else None
            for service in services if isinstance(services, list) else ():
                if isinstance(service, dict) and service.get(
                        "service_id") == self.options.service_id and isinstance(
                        service.get("properties"), dict):
                    self.properties.update(service["properties"])
            await client.publish(f"{base}sys/properties/set/response/request_id={request_id}",
                                 json.dumps(SET_RESPONSE), 1)
            await self.save()
            await self.report(client)
        elif rest.startswith("sys/properties/get/request_id=") and request_id:
            await client.publish(
                f"{base}sys/properties/get/response/request_id={request_id}",
                json.dumps({"services": [{"service_id": self.options.service_id,
                                          "properties": self.properties}]}), 1)
        elif rest == "sys/messages/down" or rest.startswith("user/"):
            self.received.append({"topic": topic, "time": self.clock.time(),
                                  "payload": payload.decode("utf-8", "replace")[:4096]})
            del self.received[:-MESSAGES_KEPT]
            await self.save()
