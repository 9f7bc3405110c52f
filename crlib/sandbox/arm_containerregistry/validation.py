"""Field checks shared by the registry resources: names, enums, booleans, durations, cron
expressions and the OCI grammar for repositories and tags.

Each check raises a 400 naming the offending field, and returns the value in the form Azure
stores it (enums in their canonical case, string booleans as booleans), because the Azure CLI
sends lowercase enums ("readwrite") and string flags ("true").
"""

from __future__ import annotations

import datetime as dt
import re

from ..core.errors import SandboxError

# Resource names, per the spec's path parameters. Azure also wants a connected registry's
# name to start with a letter: it becomes part of the sync token's gateway actions.
REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
SCOPE_MAP_NAME = re.compile(r"^[a-zA-Z0-9_-]{5,50}$")
TOKEN_NAME = re.compile(r"^[a-zA-Z0-9-]{5,50}$")
CONNECTED_REGISTRY_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9]{4,49}$")

# The OCI distribution grammar: lowercase path components joined by "/", tags of up to 128 characters.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^\w[\w.-]{0,127}$")
DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_REPOSITORY_MAX = 256

_DURATION = re.compile(r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, lowest, highest, names that stand for numbers) for the five cron fields.
_CRON_FIELDS = [("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS)]


def invalid(field: str, detail: str) -> SandboxError:
    return SandboxError(400, "InvalidParameter", f"The value of '{field}' is invalid: {detail}")


def required(field: str) -> SandboxError:
    return SandboxError(400, "InvalidParameter", f"The parameter '{field}' is required.")


def check_name(kind: str, name: str, pattern: re.Pattern, rule: str) -> None:
    if not pattern.match(name):
        raise SandboxError(400, "InvalidResourceName", f"The {kind} name '{name}' is invalid. {rule}")


def obj(value: object, field: str) -> dict:
    """An optional JSON object; absent or null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(field, "expected a JSON object.")
    return value


def string(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, "expected a non-empty string.")
    return value


def string_list(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(field, "expected a list of non-empty strings.")
    return value


def enum(value: object, allowed: tuple[str, ...], field: str) -> str:
    """The canonical spelling of a case-insensitive enum value."""
    if isinstance(value, str):
        for option in allowed:
            if option.lower() == value.lower():
                return option
    raise invalid(field, f"'{value}' is not one of {', '.join(allowed)}.")


def boolean(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid(field, f"'{value}' is not a boolean.")


def duration(value: object, field: str) -> str:
    """An ISO 8601 duration such as P2D or PT3H."""
    if not isinstance(value, str) or not _DURATION.match(value):
        raise invalid(field, f"'{value}' is not an ISO 8601 duration (P[n]Y[n]M[n]DT[n]H[n]M[n]S).")
    return value


def timestamp(value: object, field: str) -> dt.datetime:
    """An ISO 8601 date-time; one without a zone is taken as UTC."""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(field, f"'{value}' is not an ISO 8601 date-time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def cron(value: object, field: str) -> str:
    """A five-field cron expression: minute hour day-of-month month day-of-week."""
    if not isinstance(value, str) or len(parts := value.split()) != 5:
        raise invalid(field, f"'{value}' is not a cron expression with five fields.")
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            base, slash, step = item.partition("/")
            if slash and not (step.isdigit() and int(step) > 0):
                raise invalid(field, f"'{item}' has an invalid step in the {name} field.")
            if base == "*":
                continue
            bounds = base.split("-")
            values = [_cron_number(b, names) for b in bounds]
            if len(bounds) > 2 or any(v is None or not low <= v <= high for v in values):
                raise invalid(field, f"'{item}' is out of range {low}-{high} in the {name} field.")
    return value


def _cron_number(text: str, names: list[str] | None) -> int | None:
    if text.isdigit():
        return int(text)
    if names and text.upper() in names:
        return names.index(text.upper()) + (1 if names is _MONTHS else 0)
    return None


def repository(value: object, field: str, *, fold_case: bool = False) -> str:
    """A repository name; with fold_case, uppercase letters are taken as lowercase (ACR keeps
    repositories in lowercase and its import accepts either)."""
    if isinstance(value, str) and fold_case:
        value = value.lower()
    if not isinstance(value, str) or len(value) > _REPOSITORY_MAX or not REPOSITORY.match(value):
        raise invalid(field, f"'{value}' is not a valid repository name: use lowercase letters, digits and "
                             "the separators '.', '_', '__', '-' and '/'.")
    return value


def image_reference(value: object, field: str, *, fold_case: bool = False) -> tuple[str, str | None, str | None]:
    """Split repo, repo:tag or repo@digest into (repository, tag, digest)."""
    text = string(value, field)
    name, at, digest = text.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    name = repository(name, field, fold_case=fold_case)
    if tag is not None and not TAG.match(tag):
        raise invalid(field, f"'{tag}' is not a valid tag.")
    if at and (tag is not None or not DIGEST.match(digest)):
        raise invalid(field, f"'{text}' is not a valid image reference (repo, repo:tag or repo@sha256:<digest>).")
    return name, tag, digest or None
