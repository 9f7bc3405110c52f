"""The sandbox's own API on its main port: health, status, request log, state dump, reset,
settings and fault injection, plus the cloud metadata document that `az cloud register` reads.
Loopback only. Every `/_sandbox/` route (these and the other services') answers 401 unless the
request carries `Authorization: Bearer <token>`, the token being the one the running sandbox
wrote to `<state dir>/admin.token` (0600, in the 0700 state dir); runtime.Sandbox._handle checks
it before any router. `/metadata/endpoints` stays open: it holds nothing secret."""

from __future__ import annotations

from aiohttp import web

from .clock import iso
from .config import LATENCY_PROFILES
from .core.arm import OPEN
from .core.errors import SandboxError
from .core.http import Call, json_response
from .core.service import Routes, Service
from .faults import FaultSettings


def health(call: Call) -> web.Response:
    return json_response({"status": "ok"})


def status(call: Call) -> web.Response:
    return json_response(call.sandbox.status())


def clock(call: Call) -> web.Response:
    """The simulated clock that device behaviour and token expiry follow: its time (ISO 8601 UTC)
    and speed. A client comparing service timestamps with "now" asks this, not its wall clock."""
    return json_response({"now": iso(call.sandbox.clock.now()), "speed": call.sandbox.clock.speed})


def requests(call: Call) -> web.Response:
    since = int(call.query.get("since", "0"))
    return json_response({"requests": call.sandbox.store.requests(since)})


def state(call: Call) -> web.Response:
    return json_response(call.sandbox.store.dump())


def reset(call: Call) -> web.Response:
    """Forget every resource; `{"rotate_ca": true}` also replaces the CA (`crlib sandbox reset`)."""
    call.sandbox.reset(rotate_ca=bool(call.json(required=False).get("rotate_ca")))
    return web.Response(status=204)


def update_settings(call: Call) -> web.Response:
    body = call.json()
    sandbox = call.sandbox
    if "latency_profile" in body:
        if body["latency_profile"] not in LATENCY_PROFILES:
            raise SandboxError(400, "InvalidParameter",
                               f"latency_profile must be one of {sorted(LATENCY_PROFILES)}.")
        sandbox.settings.latency_profile = body["latency_profile"]
    if "clock_speed" in body:
        speed = float(body["clock_speed"])
        if speed <= 0:
            raise SandboxError(400, "InvalidParameter", "clock_speed must be positive.")
        sandbox.clock.speed = sandbox.settings.clock_speed = speed
    sandbox.settings.save(sandbox.state_dir)
    return json_response(sandbox.status())


def get_faults(call: Call) -> web.Response:
    return json_response(call.sandbox.faults.view())


def set_faults(call: Call) -> web.Response:
    """Replace the fault settings (`{}` turns every fault off), re-seed, zero the counters, and keep
    the settings in settings.json so that a restart injects the same faults."""
    try:
        settings = FaultSettings.from_dict(call.json(required=False))
    except (TypeError, ValueError) as exc:
        raise SandboxError(400, "InvalidParameter", str(exc)) from exc
    sandbox = call.sandbox
    sandbox.faults.configure(settings)
    sandbox.settings.faults = settings.to_dict()
    sandbox.settings.save(sandbox.state_dir)
    return json_response(sandbox.faults.view())


def cloud_metadata(call: Call) -> web.Response:
    """ARM's /metadata/endpoints document, describing the sandbox as a cloud of its own."""
    base = call.sandbox.arm_endpoint
    return json_response({
        "name": "CrlibSandbox",
        "galleryEndpoint": base + "/",
        "graphEndpoint": base + "/",
        "portalEndpoint": base + "/",
        "authentication": {"loginEndpoint": base + "/", "audiences": [base + "/"], "tenant": "common",
                           "identityProvider": "AAD"},
        "resourceManager": base + "/",
        "suffixes": {"acrLoginServer": "127.0.0.1", "keyVaultDns": "vault.sandbox.invalid",
                     "storage": "core.sandbox.invalid"},
    })


URLS = [
    ("GET", "/_sandbox/health", health),
    ("GET", "/_sandbox/status", status),
    ("GET", "/_sandbox/clock", clock),
    ("GET", "/_sandbox/requests", requests),
    ("GET", "/_sandbox/state", state),
    ("POST", "/_sandbox/reset", reset, False),
    ("POST", "/_sandbox/settings", update_settings, False),
    ("GET", "/_sandbox/faults", get_faults),
    ("POST", "/_sandbox/faults", set_faults, False),
    ("GET", "/metadata/endpoints", cloud_metadata),
]

SERVICE = Service(name="admin", routes=[Routes(OPEN, URLS)])
