"""Where a sandbox keeps its state, and the identity and settings it hands out."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUNTIME_FILE = "runtime.json"  # what a running sandbox writes about itself (read by control)
ADMIN_TOKEN_FILE = "admin.token"  # the admin API's bearer token, new at each start (0600)
ADMIN_PREFIX = "/_sandbox/"  # every route under it needs `Authorization: Bearer <admin token>`

STATE_DIR_ENV = "CRLIB_SANDBOX_DIR"

# Server-side duration, in seconds, of each long-running-operation kind.
LATENCY_PROFILES: dict[str, dict[str, float]] = {
    "instant": {},
    # Ratios follow what Azure takes in practice (hub create ~ 60-90 s, registry create ~ 15 s,
    # import ~ 10 s ...), scaled down 20x so a benchmark run takes seconds.
    "benchmark": {
        "resourcegroup.delete": 1.0,
        "registry.create": 0.75,
        "registry.update": 0.4,
        "registry.generatecredentials": 0.2,
        "registry.import": 0.5,
        "scopemap.create": 0.15,
        "scopemap.update": 0.15,
        "scopemap.delete": 0.15,
        "token.create": 0.15,
        "token.update": 0.15,
        "token.delete": 0.15,
        "connectedregistry.create": 0.25,
        "connectedregistry.update": 0.25,
        "connectedregistry.delete": 0.25,
        "connectedregistry.deactivate": 0.1,
        "iothub.create": 3.5,
        "iothub.update": 1.5,
        "iothub.delete": 1.5,
    },
}


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only (0600 from creation, never briefly
    wider, whatever the umask), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed and make it 0700: it holds the sandbox's
    credentials, keys and admin token."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def default_state_dir() -> Path:
    """The per-user default, overridable with CRLIB_SANDBOX_DIR."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "crlib" / "sandbox"


@dataclass
class SandboxIdentity:
    """Sandbox-only tenant, subscription and service principal. Never valid in Azure."""

    tenant_id: str
    subscription_id: str
    client_id: str
    client_secret: str

    @classmethod
    def generate(cls) -> SandboxIdentity:
        return cls(
            tenant_id=str(uuid.uuid4()),
            subscription_id=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret="sandbox-" + secrets.token_urlsafe(24),
        )


@dataclass
class SandboxSettings:
    """What a sandbox was started with. Persisted so a restart keeps its ports and identity."""

    identity: SandboxIdentity
    port: int = 0
    latency_profile: str = "instant"
    clock_speed: float = 1.0
    extra: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)  # crlib.sandbox.faults.FaultSettings, as JSON

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SandboxSettings:
        path = state_dir / "settings.json"
        if path.exists():
            raw = json.loads(path.read_text())
            raw["identity"] = SandboxIdentity(**raw["identity"])
            return cls(**raw)
        settings = cls(identity=SandboxIdentity.generate())
        settings.save(state_dir)
        return settings

    def save(self, state_dir: Path) -> None:
        private_dir(state_dir)
        write_private(state_dir / "settings.json", json.dumps(asdict(self), indent=2))

    def latency(self, kind: str) -> float:
        return LATENCY_PROFILES.get(self.latency_profile, {}).get(kind, 0.0)
