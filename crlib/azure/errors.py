"""Lower-level errors mapped into crlib's tree, in one place (as httpx's `map_exceptions`).

The SDKs raise three families: azure-core's `HttpResponseError` (ARM, Key Vault), msrest's
`HttpOperationError` (azure-iot-hub's service clients) and requests' `RequestException` (the ARM
session, python-dxf). A step wraps each write in `map_exceptions(step, what)`; a refusal becomes
`StepFailed` naming what was being written, with the original error attached. `missing_ok`
makes an already-missing resource a success (`delete_` verbs). The raw ARM session answers
with a response rather than an error: `arm_body` turns a refusal into `StepFailed` with ARM's
error text (`arm_error`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import StepFailed


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, whichever SDK raised it."""
    code = getattr(exc, "status_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def message(exc: BaseException) -> str:
    """What the service said: azure-core's parsed message, else the error's text."""
    return str(getattr(exc, "message", None) or exc)


def is_not_found(exc: BaseException) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    return isinstance(exc, ResourceNotFoundError) or status_code(exc) == 404


def _sdk_errors() -> tuple[type[Exception], ...]:
    import requests
    from azure.core.exceptions import AzureError
    from msrest.exceptions import ClientException

    return (AzureError, ClientException, requests.RequestException)


@contextlib.contextmanager
def map_exceptions(step: str, what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Turn an SDK's refusal of `what` into StepFailed; with `missing_ok`, a 404 is success."""
    try:
        yield
    except _sdk_errors() as exc:
        if missing_ok and is_not_found(exc):
            return
        raise StepFailed(step, f"{what} failed: {message(exc)}", error=exc) from exc


T = TypeVar("T")


def get_or_none(read: Callable[[], T]) -> T | None:
    """`read()`, or None when the resource does not exist (404 from any SDK)."""
    try:
        return read()
    except _sdk_errors() as exc:
        if is_not_found(exc):
            return None
        raise


# -- raw ARM responses (the requests session: resource groups, subscriptions, providers) -------------
def arm_error(response: Any) -> str:
    """ARM's error body as one line: status, code and message (or the start of the text)."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return f"{response.status_code} {error.get('code', response.reason)}: {error.get('message', response.text[:200])}"


def arm_body(step: str, what: str, response: Any) -> Any:
    """An ARM response's JSON body; a refusal (not 2xx) is StepFailed naming `what` with ARM's error."""
    if not response.ok:
        raise StepFailed(step, f"{what} failed: {arm_error(response)}")
    return response.json()
