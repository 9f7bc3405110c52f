"""How each request to a hub's service API signed in: the sandbox's auth journal.

The request log (`GET /_sandbox/requests`) says what was asked and answered; it does not say which
credential came with it. This journal does, for every request that reached a hub's authentication:
`policy-sas` (a shared access policy's key), `device-sas` / `module-sas` (an identity's own key),
`entra` (a Microsoft Entra ID bearer token) or `none`, and whether the hub admitted it. Tests read
it to show that a run reached a hub with `disableLocalAuth` through Entra ID only.

It is kept in memory, per sandbox process (the last `LIMIT` entries), and served on the main port
at `GET /_sandbox/iothub/auth?since=<seq>` like the request log: `{"requests": [{seq, time, hub,
host, method, path, api_version, scheme, principal, admitted}, ...]}`.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import json_response

if TYPE_CHECKING:
    from ..core.http import Call
    from ..runtime import Sandbox

POLICY_SAS = "policy-sas"
DEVICE_SAS = "device-sas"
MODULE_SAS = "module-sas"
ENTRA = "entra"
NONE = "none"
LIMIT = 10_000


class _Journal:
    def __init__(self) -> None:
        self.entries: deque[dict] = deque(maxlen=LIMIT)
        self.seq = itertools.count(1)


_JOURNALS: weakref.WeakKeyDictionary[Sandbox, _Journal] = weakref.WeakKeyDictionary()


def _journal(sandbox: Sandbox) -> _Journal:
    journal = _JOURNALS.get(sandbox)
    if journal is None:
        journal = _JOURNALS[sandbox] = _Journal()
    return journal


def scheme_of(header: str | None) -> str:
    """The credential kind an Authorization header carries, valid or not."""
    scheme, _, rest = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return ENTRA
    if scheme != "SharedAccessSignature":
        return NONE
    fields = dict(part.partition("=")[::2] for part in rest.split("&"))
    if "skn" in fields:
        return POLICY_SAS
    return MODULE_SAS if "/modules/" in fields.get("sr", "").replace("%2F", "/").replace("%2f", "/") else DEVICE_SAS


def record(call: Call, scheme: str, *, admitted: bool, principal: str | None = None) -> None:
    journal = _journal(call.sandbox)
    journal.entries.append({
        "seq": next(journal.seq), "time": time.time(), "hub": call.host.key, "host": call.request.host,
        "method": call.method, "path": call.request.path, "api_version": call.api_version, "scheme": scheme,
        "principal": principal, "admitted": admitted,
    })


def entries(sandbox: Sandbox, since: int = 0) -> list[dict]:
    return [dict(e) for e in _journal(sandbox).entries if e["seq"] > since]


def auth_journal(call: Call) -> web.Response:
    since = call.query.get("since", "0")
    if not since.isdigit():
        raise SandboxError(400, "InvalidParameter", "since must be a sequence number.")
    return json_response({"requests": entries(call.sandbox, int(since))})


# Mounted on the main port's open router, beside the sandbox's own API.
URLS = [("GET", "/_sandbox/iothub/auth", auth_journal)]
