"""IoT Hub's error format, and the refusals the service API makes.

IoT Hub answers errors with {"Message": "ErrorCode:<code>;<message>", "ExceptionMessage": ...}
and names the code again in the iothub-errorcode header, which the SDKs read.
"""

from __future__ import annotations

import datetime as dt
import uuid

from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import json_response


def render_error(err: SandboxError) -> web.Response:
    now = dt.datetime.now(dt.UTC)
    tracking = f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{now:%m/%d/%Y %H:%M:%S}"
    # The details (why a token was refused, say) are the sandbox's addition: Azure keeps them to itself.
    exception = f"{err.details} {tracking}" if err.details else tracking
    body = {"Message": f"ErrorCode:{err.code};{err.message}", "ExceptionMessage": exception}
    return json_response(body, err.status, {"iothub-errorcode": err.code} | err.headers)


def unauthorized(reason: str) -> SandboxError:
    return SandboxError(401, "IotHubUnauthorizedAccess", "Unauthorized", details=reason)


def argument_invalid(message: str) -> SandboxError:
    return SandboxError(400, "ArgumentInvalid", message)


def device_not_found(device_id: str) -> SandboxError:
    return SandboxError(404, "DeviceNotFound", f"Device {device_id} not registered")


def module_not_found(device_id: str, module_id: str) -> SandboxError:
    return SandboxError(404, "ModuleNotFound", f"Module {module_id} on device {device_id} not found")


def configuration_not_found(config_id: str) -> SandboxError:
    return SandboxError(404, "ConfigurationNotFound", f"Configuration {config_id} not found")


def precondition_failed(what: str) -> SandboxError:
    return SandboxError(412, "PreconditionFailed", f"Precondition failed: the etag does not match {what}'s "
                        "current etag")


def configuration_count_limit_exceeded(limit: int) -> SandboxError:
    """413101 ConfigurationCountLimitExceeded, "The configuration count limit has been exceeded."
    (Troubleshoot Azure IoT Hub error codes, articles/iot-hub/troubleshoot-error-codes.md)."""
    return SandboxError(413, "ConfigurationCountLimitExceeded",
                        f"The configuration count limit has been exceeded: this hub has {limit} configurations and "
                        f"IoT Edge deployments, its maximum. Delete one before creating another.")
