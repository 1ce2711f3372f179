"""EnOS's error table: every Connection Service and API-gateway error as a typed exception.

Each class carries its wire code and exact ``msg`` (from the renew seed and the spec digest);
``wire.py`` is the one place they are rendered. Nothing else formats an error string.
"""

from __future__ import annotations

from typing import Any, ClassVar

# -- Connection Service: {"code", "msg", "requestId", "data"} --------------------------------


class ConnectError(Exception):
    """An error of the Connection Service, sent as HTTP 200 with ``code`` set."""

    code: ClassVar[int] = 99400
    msg: ClassVar[str] = ""

    def __init__(self, msg: str | None = None) -> None:
        self.message = msg if msg is not None else self.msg
        super().__init__(self.message)


class _Detailed(ConnectError):
    """Rows whose documented text ends in ``message: (...), detail message: (...)``."""

    template: ClassVar[str] = ""

    def __init__(self, message: str, detail: str) -> None:
        self.detail_message = message
        self.detail = detail
        super().__init__(self.template.format(message=message, detail=detail))


class ValidityExceedsProductMax(ConnectError):
    msg = ("The specified validity period exceeds the maximum certificate validity period of "
           "the product to which this device belongs.")


class InvalidDeviceIdentifier(ConnectError):
    msg = "invalid argument: The device identifier is invalid"


class InvalidArgument(ConnectError):
    """``Invalid Argument certSn:certSn is missing`` and the same form for other parameters.

    The documented rows are ``certSn`` and ``csr`` "is missing"; the emulator uses the same
    form for the parameters the sources say nothing about (orgId, action, body, bad types).
    """

    def __init__(self, name: str, problem: str = "missing") -> None:
        self.name = name
        super().__init__(f"Invalid Argument {name}:{name} is {problem}")


class ProductNotBidirectional(ConnectError):
    msg = ("The product to which the device belongs to is not a product that supports "
           "bi-directional authorization.")


class CallCaError(ConnectError):
    def __init__(self, ca_code: int, message: str, detail: str) -> None:
        super().__init__(f"Call ca error!: Certificate service err info:, code: {ca_code}, "
                         f"message: {message}, detail message: {detail}")


class InvalidCertRequest(_Detailed):
    template = "Invalid cert request!message: {message}, detail message: {detail}"


class DuplicateSubject(_Detailed):
    template = ("Duplicate subject by certificate request!message: {message}, "
                "detail message: {detail}")


class RenewFailed(_Detailed):
    template = "Renew cert is failed!message: {message}, detail message: {detail}"


class RevokeFailed(_Detailed):
    template = "Revoke cert is failed!message: {message}, detail message: {detail}"


class QueryFailed(_Detailed):
    template = "Query cert is failed!message: {message}, detail message: {detail}"


class InvalidCallParameters(_Detailed):
    template = ("When calling Certificate Services, the call parameters are invalid.message: "
                "{message}, detail message: {detail}")


class SerialRequired(ConnectError):
    msg = "The serial number of the certificate to be updated is required."


class SerialNegative(ConnectError):
    msg = "The serial number of the new certificate is invalid (less than 0)."


class OriginalRevoked(ConnectError):
    msg = "The original certificate has been revoked and cannot be updated."


class OriginalExpired(ConnectError):
    msg = "The original certificate has expired and cannot be updated."


class CertificateNotBound(ConnectError):
    msg = ("The certificate list bound to the device does not have the certificate, or the "
           "certificate is bound to other devices.")


class DeviceNotFound(ConnectError):
    code = 11404
    msg = "Device cannot be found"


class CertificateBoundElsewhere(ConnectError):
    code = 11833
    msg = "Certificate is already bound to another device."


class InternalError(ConnectError):
    """99500: the services behind the Connection Service failed (or a scenario said so)."""

    code = 99500
    msg = "Internal error of certificate service."


class ProductServiceError(InternalError):
    msg = "Internal error of product service."


class IotHubServiceError(InternalError):
    msg = "Internal error of IoT Hub service."


INTERNAL_ERRORS: dict[str, type[InternalError]] = {
    "certificate": InternalError,
    "product": ProductServiceError,
    "iothub": IotHubServiceError,
}


def connect_errors() -> list[type[ConnectError]]:
    """Every row of the Connection Service table with a fixed message."""
    found: list[type[ConnectError]] = []
    todo: list[type[ConnectError]] = [ConnectError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        found.append(cls)
    return found


# -- Device access over MQTT: a reply's {"id", "code", "message", "data"} ------------------


class MqttReplyError(Exception):
    """A device's request refused in its ``_reply``: EnOS's "Common Return Codes" of its MQTT
    reference (device-connection/.../reference/mqtt/common_param), code and exact message."""

    code: ClassVar[int] = 1009
    msg: ClassVar[str] = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail  # for the journal only; the wire carries ``msg``
        super().__init__(self.msg)


class NoWritePermission(MqttReplyError):
    """"The MQTT topic is not supported, or the device that tried to publish to the topic
    has not logged in to EnOS": a topic (or a batch entry) naming a device that is neither
    the session's nor one of its logged-in sub-devices."""

    code = 1009
    msg = "Publish to topic with no write permission"


# -- API gateway (APIM): {"status", "msg", "business", ...} ---------------------------------


class GatewayError(Exception):
    """An APIM refusal. ``apim_status`` 4011/4012 is what enos-poseidon's retry path reads."""

    status: ClassVar[int] = 1005
    msg: ClassVar[str] = ""
    apim_status: ClassVar[int | None] = None

    def __init__(self, business: str = "apim-gateway", **extra: Any) -> None:
        self.business = business
        self.extra = extra
        super().__init__(self.msg)


class DuplicatedEncryption(GatewayError):
    status = 1001
    msg = "Repeated requests with duplicated encryption."


class AppKeyUnknown(GatewayError):
    status = 1002
    msg = "The appKey does not exist."


class EncryptionInvalid(GatewayError):
    status = 1003
    msg = "The encryption is not valid."


class InvalidParameter(GatewayError):
    status = 1004
    msg = "Invalid parameter."


class GatewayInternal(GatewayError):
    status = 1005
    msg = "Internal service exception."


class ParameterEmpty(GatewayError):
    status = 1202
    msg = "The parameter is empty."


class TokenExpired(GatewayError):
    status = 1203
    msg = "The access token has expired."
    apim_status = 4011  # the SDK refreshes and retries


class RefreshFailed(GatewayError):
    status = 1204
    msg = "Failed to refresh access token."


class TokenMissing(ParameterEmpty):
    """A business call with no token at all: the SDK's 4012 path fetches a new one."""

    apim_status = 4012


class TokenUnknown(InvalidParameter):
    """A signed call whose token the gateway never issued (or replaced on refresh)."""

    apim_status = 4012
