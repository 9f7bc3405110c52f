"""`crlib status`: the day-2 view of one site or a whole fleet. It reads and never writes.

Per site it reads the connected registry (connection state, activation, last sync, the sync
schedule and window), the sync token's and the client tokens' password expiries, and what the host
reports: the `$edgeAgent` module twin's modules on IoT Edge, the cluster extension on Arc (both
through `crlib.hosts`, the readers the deploy step uses). For a fleet it reads each registry's
connected registries and tokens with one list call each, the IoT hub's access once per hub, and the
device twins per site in a small thread pool.

A site is healthy when its connected registry is Online (or Syncing), Active, its sync is not
stale, no sync or client token password expires within `status.expiry_warning_days`, and its host
runs every module (or the extension Succeeded). Anything else is a reason, one line each, naming
the site.

**Staleness.** A sync may run late by `status.sync_grace`. The sync that must have happened by now
is the schedule's last due time before `now - grace` (with a sync window, the start of the last
window that closed before `now - grace`: a sync anywhere in that window counts). The site is stale
when its last sync is older than that, or when it never synced.

**Which clock.** Times are compared with the clock of the service that wrote them
(`TargetProfile.now`): Azure's is the wall clock; the sandbox's is its simulated clock, which runs
faster than the wall clock when started with `--clock-speed` (the tests run it at 60x) and which its
devices stamp `lastSyncTime` with and its token expiries are checked against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import isodate
import yaml

from .azure import names, readers
from .azure.errors import get_or_none, map_exceptions
from .errors import CrlibError, ParameterError
from .params import Site, Status
from .secrets import MASKER

if TYPE_CHECKING:
    import pandas as pd

    from .context import RunContext

STEP = "status"
ONLINE_STATES = ("Online", "Syncing")  # Syncing: Online, in the middle of a sync (as the deploy step reads it)
DEVICE_WORKERS = 8  # device twins / extensions read at once


# -- what is read -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenExpiry:
    """When a token's password expires: `expires` None means never (or see `problem`)."""

    token: str
    kind: str  # "sync token" or "client token"
    expires: dt.datetime | None
    days: float | None  # days from now until `expires` (negative: expired)
    problem: str | None = None  # "does not exist", "has no password"

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "kind": self.kind, "expires": iso(self.expires),
                "days": None if self.days is None else round(self.days, 3), "problem": self.problem}


@dataclass(frozen=True)
class SiteStatus:
    """One site's status as read at `now` (the service's clock)."""

    site: str
    host: str  # host.kind: iotedge or arc
    connected_registry: str
    now: dt.datetime
    connection_state: str | None  # None: the connected registry does not exist
    activation: str | None
    last_activity: dt.datetime | None
    last_sync: dt.datetime | None
    schedule: str | None
    sync_window: dt.timedelta | None
    sync_due: dt.datetime | None  # the last sync must be no older than this
    stale: bool
    sync_password: TokenExpiry | None
    client_tokens: tuple[TokenExpiry, ...]
    modules: tuple[tuple[str, str], ...]  # module (or the extension) -> runtimeStatus (provisioningState)
    host_ready: bool
    host_summary: str
    expiry_warning_days: int
    reasons: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.reasons

    @property
    def sync_age(self) -> dt.timedelta | None:
        return None if self.last_sync is None else max(self.now - self.last_sync, dt.timedelta(0))

    @property
    def earliest_client_token(self) -> TokenExpiry | None:
        """The client token whose password expires first (tokens that never expire come last)."""
        dated = [t for t in self.client_tokens if t.days is not None]
        return min(dated, key=lambda t: t.days or 0.0) if dated else None

    def to_dict(self) -> dict[str, Any]:
        age = self.sync_age
        return {"site": self.site, "host": self.host, "connected_registry": self.connected_registry,
                "healthy": self.healthy, "now": iso(self.now), "connection_state": self.connection_state,
                "activation": self.activation, "last_activity_time": iso(self.last_activity),
                "last_sync_time": iso(self.last_sync), "sync_age_seconds": None if age is None else int(age.total_seconds()),
                "schedule": self.schedule,
                "sync_window": None if self.sync_window is None else isodate.duration_isoformat(self.sync_window),
                "sync_due": iso(self.sync_due), "stale": self.stale,
                "sync_password": None if self.sync_password is None else self.sync_password.to_dict(),
                "client_tokens": [t.to_dict() for t in self.client_tokens], "modules": dict(self.modules),
                "host_ready": self.host_ready, "host_summary": self.host_summary,
                "expiry_warning_days": self.expiry_warning_days, "reasons": list(self.reasons)}


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second: 2026-12-05T10:00:00Z."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- the rules --------------------------------------------------------------------------------------------
def sync_due(schedule: str, window: dt.timedelta | None, grace: dt.timedelta, now: dt.datetime) -> dt.datetime:
    """The start of the last sync period that must have synced by `now`: the schedule's last due time
    before `now - grace`, or with a window, the start of the last window that closed before then."""
    from croniter import croniter

    latest = now - grace - (window or dt.timedelta(0))
    due: dt.datetime = croniter(schedule, latest).get_prev(dt.datetime)
    return due


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = isodate.parse_datetime(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _window(value: Any) -> dt.timedelta | None:
    if value is None or value == "":
        return None
    parsed = isodate.parse_duration(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dt.timedelta) else None


def in_words(delta: dt.timedelta) -> str:
    """A duration as an operator reads it: 45s, 12m, 3h 5m, 4d 2h."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def expiry_words(expiry: TokenExpiry) -> str:
    """'expires in 3 days (2026-12-05)', 'expires in 5 hours (...)', 'expired 2 days ago (...)'."""
    assert expiry.expires is not None and expiry.days is not None
    date = expiry.expires.date().isoformat()
    if expiry.days <= 0:
        ago = -expiry.days
        return f"expired {_plural(round(ago), 'day') if ago >= 1 else 'today'}{' ago' if ago >= 1 else ''} ({date})"
    if expiry.days >= 1:
        return f"expires in {_plural(round(expiry.days), 'day')} ({date})"
    return f"expires in {_plural(max(1, round(expiry.days * 24)), 'hour')} ({date})"


def token_expiry(name: str, kind: str, token: Any, now: dt.datetime) -> TokenExpiry:
    """A token's password expiry: crlib's slot (password1) when the token has it, else the latest of
    its passwords (any valid password signs in). A password without an expiry never expires."""
    if token is None:
        return TokenExpiry(name, kind, None, None, "does not exist")
    passwords = list((token.credentials.passwords if token.credentials else None) or [])
    if not passwords:
        return TokenExpiry(name, kind, None, None, "has no password")
    slot = readers.token_password(token)
    considered = [slot] if slot is not None else passwords
    expiries = [_utc(p.expiry) for p in considered]
    if any(e is None for e in expiries):
        return TokenExpiry(name, kind, None, None)
    latest = max(e for e in expiries if e is not None)
    return TokenExpiry(name, kind, latest, (latest - now).total_seconds() / 86400)


def _expiry_reason(site: str, expiry: TokenExpiry, warning_days: int) -> str | None:
    label = f"{expiry.kind} {expiry.token}" + (" password" if expiry.kind == "sync token" else "")
    if expiry.problem:
        return f"{site}: {expiry.kind} {expiry.token} {expiry.problem}"
    if expiry.days is not None and expiry.days <= warning_days:
        return f"{site}: {label} {expiry_words(expiry)}"
    return None


def assess(site: Site, now: dt.datetime, connected: Any, tokens: dict[str, Any],
           host: tuple[bool, str, tuple[tuple[str, str], ...]]) -> SiteStatus:
    """A site's status from what was read: the connected registry (None: missing), the registry's
    tokens by lowercased name, and the host's (ready, summary, modules)."""
    name, rules = site.connected_registry.name, site.status
    reasons: list[str] = []
    state = activation = None
    last_activity = last_sync = due = None
    schedule, window, stale = None, None, False
    if connected is None:
        reasons.append(f"{site.site}: connected registry {name} does not exist")
    else:
        state = readers.text(connected.connection_state)
        activation = readers.text(connected.activation.status) if connected.activation else None
        last_activity = _utc(connected.last_activity_time)
        sync = connected.parent.sync_properties if connected.parent else None
        schedule = (sync.schedule if sync else None) or site.connected_registry.sync_schedule
        window = _window(sync.sync_window if sync else None)
        last_sync = _utc(sync.last_sync_time if sync else None)
        due = sync_due(schedule, window, rules.sync_grace_delta, now)
        stale = last_sync is None or last_sync < due
        if state not in ONLINE_STATES:
            reasons.append(f"{site.site}: connected registry is {state or 'in no connection state'}")
        if activation != "Active":
            reasons.append(f"{site.site}: connected registry is not activated ({activation or 'no activation status'})")
        if last_sync is None:
            reasons.append(f"{site.site}: connected registry has never synced")
        elif stale:
            shown = f"schedule '{schedule}'" + (f", window {isodate.duration_isoformat(window)}" if window else "")
            reasons.append(f"{site.site}: last sync {in_words(now - last_sync)} ago ({iso(last_sync)}), before the "
                           f"sync due {iso(due)} ({shown}, grace {rules.sync_grace})")
    sync_name = names.sync_token_name(name)
    sync_password = token_expiry(sync_name, "sync token", tokens.get(sync_name.lower()), now)
    client_tokens = tuple(token_expiry(t.name, "client token", tokens.get(t.name.lower()), now)
                          for t in site.client_access.tokens)
    for expiry in (sync_password, *client_tokens):
        reason = _expiry_reason(site.site, expiry, rules.expiry_warning_days)
        if reason:
            reasons.append(reason)
    ready, summary, modules = host
    if not ready:
        reasons.append(f"{site.site}: {'extension' if site.host.kind == 'arc' else 'device'}: {summary}")
    return SiteStatus(site.site, site.host.kind, name, now, state, activation, last_activity, last_sync, schedule,
                      window, due, stale, sync_password, client_tokens, modules, ready, MASKER.redact(summary),
                      rules.expiry_warning_days, tuple(MASKER.redact(r) for r in reasons))


# -- reading ----------------------------------------------------------------------------------------------
def _host(ctx: RunContext) -> tuple[bool, str, tuple[tuple[str, str], ...]]:
    """What the site's host reports, through crlib.hosts (the `$edgeAgent` twin, or the extension)."""
    from .hosts import host_for

    try:
        shown = host_for(ctx, step=STEP, required=False).status()
    except CrlibError as exc:  # a missing hub; on Arc, a Failed extension names its causes
        return False, getattr(exc, "message", None) or str(exc), ()
    return shown.ready, shown.summary, tuple(sorted(shown.modules.items()))


def _registry_parts(ctx: RunContext) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The registry's connected registries and tokens by lowercased name, one list call each
    (None for the connected registries when the registry does not exist)."""
    where = f"registry '{ctx.site.registry.name}' in resource group '{ctx.site.resource_group}'"
    with map_exceptions(STEP, f"listing the connected registries of {where}"):
        connected = get_or_none(lambda: readers.connected_registries(ctx))
    if connected is None:
        return None, {}
    with map_exceptions(STEP, f"listing the tokens of {where}"):
        tokens = get_or_none(lambda: readers.tokens(ctx)) or []
    return {c.name.lower(): c for c in connected}, {t.name.lower(): t for t in tokens}


def _read_target(sites: list[Site], now: dt.datetime | None) -> list[SiteStatus]:
    """Sites on one target: one profile, one set of clients, one context per site."""
    from .context import RunContext, secret_store_for
    from .profiles import Clients, profile_for

    profile = profile_for(sites[0])
    clients = Clients(profile)
    contexts = [RunContext(site, profile, clients, secret_store_for(site, profile)) for site in sites]
    at = (now or profile.now()).astimezone(dt.UTC)

    registries: dict[tuple[str, str], tuple[dict[str, Any] | None, dict[str, Any]]] = {}
    hubs: dict[tuple[str, str], readers.HubAccess | None] = {}
    for ctx in contexts:
        site = ctx.site
        key = (site.resource_group.lower(), site.registry.name.lower())
        if key not in registries:
            registries[key] = _registry_parts(ctx)
        if site.host.kind == "iotedge":
            hub_key = (site.resource_group.lower(), site.hub.name.lower())
            if hub_key not in hubs:  # listKeys (or Entra ID) once per hub, not once per site
                with map_exceptions(STEP, f"reading IoT hub '{site.hub.name}'"):
                    hubs[hub_key] = readers.hub_access(ctx, required=False)
            if hubs[hub_key] is not None:
                readers.remember(ctx, "hub_access", hubs[hub_key])
    if any(s.host.kind == "arc" for s in sites):  # build the shared clients before the threads use them
        _ = clients.extensions, clients.connected_clusters

    with ThreadPoolExecutor(max_workers=max(1, min(DEVICE_WORKERS, len(contexts))),
                            thread_name_prefix="crlib-status") as pool:
        hosts = list(pool.map(_host, contexts))
    found = []
    for ctx, host in zip(contexts, hosts, strict=True):
        site = ctx.site
        connected, tokens = registries[(site.resource_group.lower(), site.registry.name.lower())]
        if connected is None:
            missing = f"{site.site}: registry {site.registry.name} does not exist in resource group {site.resource_group}"
            status = assess(site, at, None, {}, host)
            found.append(_replace_reasons(status, (missing, *status.reasons)))
            continue
        found.append(assess(site, at, connected.get(site.connected_registry.name.lower()), tokens, host))
    return found


def _replace_reasons(status: SiteStatus, reasons: tuple[str, ...]) -> SiteStatus:
    from dataclasses import replace

    return replace(status, reasons=reasons)


def read_status(sites: Iterable[Site], *, now: dt.datetime | None = None) -> list[SiteStatus]:
    """Each site's status, in the order given. `now` defaults to the service's clock
    (`TargetProfile.now`), read once per target. Reads only."""
    listed = list(sites)
    by_target: dict[str, list[int]] = {}
    for index, site in enumerate(listed):
        by_target.setdefault(site.target.model_dump_json(), []).append(index)
    found: dict[int, SiteStatus] = {}
    for indexes in by_target.values():
        for index, status in zip(indexes, _read_target([listed[i] for i in indexes], now), strict=True):
            found[index] = status
    return [found[i] for i in range(len(listed))]


# -- input ------------------------------------------------------------------------------------------------
def is_inventory(path: Path | str) -> bool:
    """A fleet inventory has a top-level `fleet:` key; anything else is read as one site's file."""
    from .params import _read

    try:
        data = yaml.safe_load(_read(Path(path)))
    except yaml.YAMLError:
        return False  # load_file names the line
    return isinstance(data, dict) and "fleet" in data


def load_sites(path: Path | str, overrides: dict[str, object] | None = None, *, flag: str = "-p",
               names_: Sequence[str] | None = None) -> list[Site]:
    """The sites of a parameter file or an inventory. Overrides apply to a parameter file as `crlib run`
    applies them; to an inventory only `status.*` ones, to every site. `names_` picks inventory sites."""
    from . import params

    overrides = dict(overrides or {})
    if not is_inventory(path):
        if names_:
            raise ParameterError("--sites", f"picks sites of a fleet inventory; {path} is one site's parameter file")
        return [params.load_file(path, overrides, flag=flag)]
    from .inventory import load_inventory

    other = sorted(k for k in overrides if not k.startswith("status."))
    if other:
        raise ParameterError(other[0], "only status.* parameters can be overridden for a whole inventory; edit the "
                                       "inventory for the others", where=f"{flag} {other[0]}")
    fleet = load_inventory(path)
    return [with_status(site, overrides, flag=flag) for site in fleet.select(names_)]


def with_status(site: Site, overrides: dict[str, object], *, flag: str = "-p") -> Site:
    """The site with `status.*` overrides applied, validated as a parameter file's would be."""
    from pydantic import ValidationError

    changes = {k.removeprefix("status."): v for k, v in overrides.items() if k.startswith("status.")}
    if not changes:
        return site
    try:
        status = Status.model_validate(site.status.model_dump() | changes)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = "status." + ".".join(str(p) for p in error["loc"])
        raise ParameterError(field, error["msg"].removeprefix("Value error, "), where=f"{flag} {field}") from None
    return site.model_copy(update={"status": status})


# -- output -----------------------------------------------------------------------------------------------
COLUMNS = ["site", "host", "connection state", "activation", "last sync", "sync age", "stale",
           "sync password expires (days)", "earliest client token expiry (days)", "modules/extension", "healthy",
           "reasons"]


def _days(expiry: TokenExpiry | None) -> Any:
    if expiry is None:
        return "none"
    if expiry.problem:
        return expiry.problem
    return "never" if expiry.days is None else round(expiry.days, 1)


def to_frame(statuses: Sequence[SiteStatus]) -> pd.DataFrame:
    """One row per site, the columns of `COLUMNS`; reasons without the site's name (it is the row's)."""
    import pandas as pd

    rows = []
    for s in statuses:
        age = s.sync_age
        earliest = s.earliest_client_token or next((t for t in s.client_tokens if t.problem), None)
        rows.append({
            "site": s.site, "host": s.host, "connection state": s.connection_state or "missing",
            "activation": s.activation or "", "last sync": iso(s.last_sync) or "never",
            "sync age": in_words(age) if age is not None else "", "stale": s.stale,
            "sync password expires (days)": _days(s.sync_password),
            "earliest client token expiry (days)": _days(earliest) if s.client_tokens else "none",
            "modules/extension": ", ".join(f"{n} {state}" for n, state in s.modules) or s.host_summary,
            "healthy": s.healthy,
            "reasons": "; ".join(r.removeprefix(f"{s.site}: ") for r in s.reasons)})
    return pd.DataFrame(rows, columns=COLUMNS)


def to_json(statuses: Sequence[SiteStatus]) -> dict[str, Any]:
    return {"healthy": all(s.healthy for s in statuses), "sites": [s.to_dict() for s in statuses]}


def plot_frame(statuses: Sequence[SiteStatus]) -> pd.DataFrame:
    """What the status plot draws, per site: the sync age and its allowance (minutes), the days to the
    first password expiry (sync or client token), the warning threshold and health."""
    import pandas as pd

    rows = []
    for s in statuses:
        expiring = [t.days for t in (s.sync_password, *s.client_tokens) if t is not None and t.days is not None]
        age, allowed = s.sync_age, (s.now - s.sync_due) if s.sync_due is not None else None
        rows.append({"site": s.site, "sync age (min)": None if age is None else round(age.total_seconds() / 60, 1),
                     "sync allowed (min)": None if allowed is None else round(allowed.total_seconds() / 60, 1),
                     "days to expiry": round(min(expiring), 2) if expiring else None,
                     "warning (days)": s.expiry_warning_days, "healthy": s.healthy})
    return pd.DataFrame(rows, columns=["site", "sync age (min)", "sync allowed (min)", "days to expiry",
                                       "warning (days)", "healthy"])


HEALTHY_COLOUR, UNHEALTHY_COLOUR, THRESHOLD_COLOUR = "#2e7d32", "#c62828", "#ef6c00"


def plot(statuses: Sequence[SiteStatus]) -> Any:
    """A matplotlib Figure (not pyplot's: nothing global) of each site's sync age and days to expiry,
    bars green when the site is healthy and red when not, the allowances drawn as lines."""
    from matplotlib.figure import Figure

    data = plot_frame(statuses).set_index("site")
    colours = [HEALTHY_COLOUR if ok else UNHEALTHY_COLOUR for ok in data["healthy"]]
    figure = Figure(figsize=(max(7.0, 0.5 * len(data) + 4), 4.8), layout="constrained")
    age_axes, expiry_axes = figure.subplots(1, 2)
    for axes, column, title in ((age_axes, "sync age (min)", "sync age (minutes)"),
                                (expiry_axes, "days to expiry", "days to the first password expiry")):
        data.fillna({column: 0}).plot.bar(y=column, ax=axes, legend=False, rot=90, title=title, xlabel="")
        for patch, colour in zip(axes.patches, colours, strict=False):
            patch.set_color(colour)
    positions = [float(x) for x in range(len(data))]
    # Each site's own line across its bar: the age its schedule allows, and its warning threshold.
    for axes, column, label in ((age_axes, "sync allowed (min)", "allowed: since the sync due"),
                                (expiry_axes, "warning (days)", "warning threshold")):
        values = data[column].astype(float)
        axes.hlines(values.tolist(), [x - 0.45 for x in positions], [x + 0.45 for x in positions],
                    colors=THRESHOLD_COLOUR, linestyles="--", label=label)
        axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), fontsize="small", frameon=False, ncols=2)
    return figure


def style(frame: pd.DataFrame) -> Any:
    """The table coloured by health: a green row for a healthy site, a red one otherwise."""
    def colour(row: pd.Series) -> list[str]:
        background = "#e8f5e9" if row["healthy"] else "#fdecea"
        return [f"background-color: {background}; text-align: left"] * len(row)

    return frame.style.apply(colour, axis=1).hide(axis="index")
