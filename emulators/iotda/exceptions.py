"""IoTDA's error table: every error the emulator can answer, with its status, code and message.

``wire.error_response`` renders these (raised ones through ``wire.error_middleware``); nothing
else writes an error body.
Codes and messages marked "chosen" are not in any public source (see README.md).
"""

from __future__ import annotations

from typing import ClassVar


class IotdaError(Exception):
    """An error in IoTDA's form: ``{"error_code": ..., "error_msg": ...}``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "IOTDA.000006"
    message: ClassVar[str] = "Invalid input data."

    def __init__(self, detail: str = "") -> None:
        # ``detail`` is for logs and the journal only: the wire carries the table's message.
        super().__init__(detail or self.message)
        self.detail = detail

    def body(self, request_id: str) -> dict[str, str]:
        return {"error_code": self.code, "error_msg": self.message}


class GatewayError(IotdaError):
    """The API gateway's form, which also names the request: APIGW answers before IoTDA does."""

    def body(self, request_id: str) -> dict[str, str]:
        return {"error_msg": self.message, "error_code": self.code, "request_id": request_id}


# -- 400 ---------------------------------------------------------------------------------------

class InvalidInput(IotdaError):
    status, code, message = 400, "IOTDA.000006", "Invalid input data."


class BadRequestFormat(IotdaError):
    """Body that is not JSON, or not sent as ``application/json``."""

    status, code = 400, "IOTDA.000008"
    message = "Invalid input. Bad request, for more detail, refer to the error message."


class LimitOutOfRange(IotdaError):
    status, code = 400, "IOTDA.000017"
    message = "Invalid input. The specified parameter 'limit' is out of range."


class InvalidCertificate(IotdaError):
    status, code, message = 400, "IOTDA.014301", "Invalid certificate content."


class VerifyCodeFailed(IotdaError):
    status, code = 400, "IOTDA.014307"
    message = "Operation not allowed. The certificates verify verifyCode failed"


class QuotaExceeded(IotdaError):
    # Chosen: the console says "the number of certificates has reached the upper limit".
    status, code = 400, "IOTDA.014302"
    message = "Operation not allowed. The number of certificates has reached the upper limit."


# -- 401 / 403 ---------------------------------------------------------------------------------

class SignatureFailed(GatewayError):
    status, code = 401, "APIGW.0301"
    message = "Incorrect IAM authentication information: verify aksk signature fail"


class TokenNotFound(GatewayError):
    # Chosen wording for a request with neither a signature nor a token.
    status, code = 401, "APIGW.0301"
    message = "Incorrect IAM authentication information: x-auth-token not found"


class TokenInvalid(GatewayError):
    # Chosen wording for an X-Auth-Token the scenario does not know.
    status, code = 401, "APIGW.0301"
    message = "Incorrect IAM authentication information: decrypt token fail"


class Forbidden(IotdaError):
    """Another project's path, or an instance the scenario does not have."""

    status, code = 403, "IOTDA.000022"
    message = "Operation not allowed. The user does not have the permission"


# -- 404 / 500 ---------------------------------------------------------------------------------

class PathNotFound(IotdaError):
    # The code is IoTDA's; the message is chosen.
    status, code, message = 404, "IOTDA.000029", "The requested resource does not exist."


class CertificateNotFound(IotdaError):
    # Chosen: no public source names the code for an unknown certificate id.
    status, code, message = 404, "IOTDA.014303", "The certificate does not exist."


class DeviceNotFound(IotdaError):
    # The code is IoTDA's (client code checks it for "the device no longer exists"); the
    # message is chosen.
    status, code, message = 404, "IOTDA.014000", "The device does not exist."


class ProductNotFound(IotdaError):
    # Chosen: no public source at hand names the code for an unknown product.
    status, code, message = 404, "IOTDA.014003", "The product does not exist."


# -- 403 / 409 (devices) -------------------------------------------------------------------------

class DeviceOffline(IotdaError):
    # Code, status and message as the platform answers a command to an offline device
    # (captured replies in public client code; spec: apis.md 4.3).
    status, code = 403, "IOTDA.014016"
    message = "Operation not allowed. The device is not online."


class CommandTimeout(IotdaError):
    # The error table's row: a synchronous call the device did not answer in time. Its status
    # is 200: it is the error_code/error_msg of the call's own reply, not an error body.
    status, code = 200, "IOTDA.014111"
    message = ("Command request timed out. Check whether the device returns a response "
               "within the specified time after receiving the request.")


class DeviceExists(IotdaError):
    # Chosen code and message: a device id (or a product's node id) already registered.
    status, code, message = 409, "IOTDA.014002", "The device already exists."


class ProductExists(IotdaError):
    # Chosen code and message: a product id already used in this project.
    status, code, message = 409, "IOTDA.014004", "The product already exists."


# -- data forwarding ---------------------------------------------------------------------------

class RuleNotFound(IotdaError):
    # IoTDA's code and message for a rule that does not exist (the rule APIs' error table).
    status, code, message = 404, "IOTDA.010002", "The rule does not exist."


class ActionNotFound(IotdaError):
    # Chosen: no public source names the code for an unknown rule action.
    status, code, message = 404, "IOTDA.010005", "The rule action does not exist."


class RuleQuotaExceeded(IotdaError):
    # The rule APIs' row for "the number of rules has reached the upper limit".
    status, code = 400, "IOTDA.010003"
    message = "The number of rules has reached the upper limit."


class QueueNotFound(IotdaError):
    # DeleteQueue's and ShowQueue's error table.
    status, code, message = 404, "IOTDA.016002", "The queueId does not exist."


class QueueInUse(IotdaError):
    # DeleteQueue's error table: a queue a rule action forwards to.
    status, code, message = 403, "IOTDA.016003", "Operation not allowed, the queue is using"


class QueueRefused(IotdaError):
    # Chosen: AddQueue says a duplicate name or a 101st queue "fails", without the error.
    status, code = 400, "IOTDA.016001"
    message = "Operation not allowed, the queue name already exists or the quota is reached."


class InternalError(IotdaError):
    # A safety net for bugs, so that a client still gets IoTDA's form rather than a traceback.
    status, code, message = 500, "IOTDA.000001", "Internal server error."


ALL_ERRORS: tuple[type[IotdaError], ...] = (
    InvalidInput, BadRequestFormat, LimitOutOfRange, InvalidCertificate, VerifyCodeFailed,
    QuotaExceeded, SignatureFailed, TokenNotFound, TokenInvalid, Forbidden, PathNotFound,
    CertificateNotFound, DeviceNotFound, ProductNotFound, DeviceOffline, CommandTimeout,
    DeviceExists, ProductExists, RuleNotFound, ActionNotFound, RuleQuotaExceeded, QueueNotFound,
    QueueInUse, QueueRefused, InternalError,
)
