"""IoTDA's probe script: the v5 reads the emulator answers (devices, a device, its shadow and
messages, its product, device CAs, server certificates) and the refusals and errors an app
meets (a wrong secret key, no Authorization, another project, an unknown device, product or
path, a bad ``limit``), for ``emulators capture`` and ``emulators drift``. Read-only: it sends
GETs only. Every request is signed SDK-HMAC-SHA256 as it is sent, by ``auth.py``'s own code,
with ``--user`` as the AK and ``--password`` as the SK."""

from __future__ import annotations

from emulators.core.quirks.probe import Credentials, Outgoing, Param, Script, Signer, Step

from .auth import signature_headers
from .options import DEFAULT_KEY

BASE = "/v5/iot/{param.project_id}"
DEVICE = BASE + "/devices/{list-devices.devices.0.device_id}"


class IotdaSigner(Signer):
    """``X-Sdk-Date`` and ``Authorization`` over the request as sent (``Host`` included)."""

    def headers(self, request: Outgoing, credentials: Credentials,
                now: float) -> tuple[tuple[str, str], ...]:
        return signature_headers(
            credentials.user, credentials.password, method=request.method, path=request.path,
            raw_query=request.raw_query, headers={"Host": request.host, **dict(request.headers)},
            body=request.body, now=now)


SCRIPT = Script(
    kind="iotda",
    version=1,
    steps=(
        # A list the AK may read in its project: refused here means the key or the project.
        Step("list-devices", BASE + "/devices", read=True, identity=True),
        Step("show-device", DEVICE, read=True),
        Step("show-device-shadow", DEVICE + "/shadow", read=True),
        Step("list-device-messages", DEVICE + "/messages", read=True),
        Step("show-product", BASE + "/products/{list-devices.devices.0.product_id}",
             read=True),
        Step("list-certificates", BASE + "/certificates", read=True),
        Step("show-certificate",
             BASE + "/certificates/{list-certificates.certificates.0.certificate_id}",
             read=True),
        Step("list-server-certificates", BASE + "/server-certificates", read=True),
        Step("show-server-certificate", BASE + "/server-certificates/"
             "{list-server-certificates.server_certificates.0.server_certificate_id}",
             read=True),
        Step("wrong-secret-key", BASE + "/devices", credentials="wrong", expect_refusal=True),
        Step("no-authorization", BASE + "/devices", credentials="none", expect_refusal=True),
        Step("other-project", "/v5/iot/0000000000000000000000000000probe/devices"),
        Step("unknown-device", BASE + "/devices/probe-no-such-device"),
        Step("unknown-product", BASE + "/products/probe-no-such-product"),
        Step("unknown-path", BASE + "/probe-no-such-resource"),
        Step("limit-not-a-number", BASE + "/devices", (("limit", "abc"),)),
        Step("limit-out-of-range", BASE + "/devices", (("limit", "0"),)),
    ),
    # A cloud has no model or firmware: the gateway's Server line, where it sends one.
    model=None,
    firmware=None,
    model_header="Server",
    refusal=r"^403 ",  # the AK may not touch that project
    default_user=DEFAULT_KEY.ak,
    default_password=DEFAULT_KEY.sk,
    params=(Param("project_id", "the project of the AK: the console's My Credentials page "
                                "lists it per region; an emulator's is its ready file's "
                                "credentials.project_id", DEFAULT_KEY.project_id),),
    signer=IotdaSigner(),
    user_is_secret=True,
)
