"""Where crlib keeps the secrets it creates, and the one masking helper every output path uses.

Parameters hold references (`local:<name>` or `keyvault:<name>`), never values. Two stores:
a local directory (one file per secret, mode 0600, outside any archive) and Azure Key Vault.
Every value read or written is registered with the masker, so logs and displays can redact it; the
masker also masks values by their key (SharedAccessKey=, SyncTokenPassword=, AccountKey=, sig=).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
MASK = "********"
# Secrets recognised by their shape, whether or not this process has seen the value: a key name
# and the value after '=' (and an opening quote), up to ';', '&', whitespace, a quote or a backslash
# (which would escape a quote in JSON). The key name is kept, the value masked.
_KEYED_SECRET = re.compile(r"(?<![A-Za-z0-9_])(?P<key>(?:SharedAccessKey|SyncTokenPassword|AccountKey|sig)"
                           r"\s*=\s*[\"']?)[^;&\s\"'\\]+", re.I)


class Masker:
    """Knows every secret value seen in this process and replaces it wherever text is shown."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        if value and len(value) >= 6:
            with self._lock:
                self._values.add(value)

    def values(self) -> set[str]:
        with self._lock:
            return set(self._values)

    def redact(self, text: str) -> str:
        for value in sorted(self.values(), key=len, reverse=True):
            text = text.replace(value, MASK)
        return _KEYED_SECRET.sub(lambda m: m.group("key") + MASK, text)


MASKER = Masker()


def mask_keyed(text: str) -> tuple[str, int]:
    """Mask secrets recognised by their key alone (a signed URL's `sig=`, a connection string's
    SharedAccessKey=); returns the text and how many were masked."""
    count = 0

    def masked(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0)[len(match.group("key")):] == MASK:
            return match.group(0)
        count += 1
        return match.group("key") + MASK

    return _KEYED_SECRET.sub(masked, text), count


def mask(value: str | None, name: str | None = None) -> str:
    """How a secret is shown anywhere: never any of its characters."""
    MASKER.register(value)
    if value is None:
        return "(none)"
    return f"{MASK} ({name})" if name else MASK


class RedactingFilter(logging.Filter):
    """A logging filter that masks every registered secret in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = MASKER.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction() -> None:
    """Mask every registered secret in every log record, whichever logger or handler it goes to.

    A filter on one logger misses records from its children and from other libraries (azure.*),
    so the redaction happens where records are made.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "crlib_redacting", False):
        return
    logging.setLogRecordFactory(_RedactingFactory(factory))


class _RedactingFactory:
    """A log record factory that redacts what the factory it wraps makes."""

    crlib_redacting = True  # what install_log_redaction looks for, so that it wraps only once

    def __init__(self, factory: Callable[..., logging.LogRecord]):
        self._factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._factory(*args, **kwargs)
        RedactingFilter().filter(record)
        return record


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def names(self, prefix: str = "") -> list[str]: ...


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"secret name {name!r} must be 1-127 letters, digits or '-'")
    return name


class LocalSecretStore:
    """One file per secret, mode 0600, in a directory of mode 0700."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory).expanduser()

    def _path(self, name: str) -> Path:
        return self.directory / _check_name(name)

    def get(self, name: str) -> str | None:
        path = self._path(name)
        if not path.exists():
            return None
        value = path.read_text()
        MASKER.register(value)
        return value

    def set(self, name: str, value: str) -> None:
        MASKER.register(value)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        path = self._path(name)
        tmp = path.with_name(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.replace(tmp, path)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self, prefix: str = "") -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir()
                      if p.is_file() and p.name.startswith(prefix) and not p.name.startswith("."))


DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"


def _inner_code(exc: Any) -> str | None:
    """The code of a Key Vault error's `innererror` (azure-core keeps it as `error.innererror`)."""
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    return inner.get("code") if isinstance(inner, dict) else None


class KeyVaultSecretStore:
    """Azure Key Vault, through azure-keyvault-secrets.

    `client_options` go to `SecretClient` as they are (e.g. `connection_verify`, and
    `verify_challenge_resource=False` for the sandbox's vault, whose host is 127.0.0.1).
    """

    def __init__(self, vault_url: str, credential: TokenCredential, **client_options: Any) -> None:
        from azure.keyvault.secrets import SecretClient

        self._client = SecretClient(vault_url, credential, **client_options)

    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            value = self._client.get_secret(_check_name(name)).value
        except ResourceNotFoundError:
            return None
        MASKER.register(value)
        return value

    def set(self, name: str, value: str) -> None:
        """Set a new version. A name soft-deleted (by a teardown) is recovered first: Key Vault
        refuses to reuse it (409, inner error `ObjectIsDeletedButRecoverable`) until it is recovered
        or purged, and recovering keeps its history, where a purge would destroy it."""
        from azure.core.exceptions import ResourceExistsError

        MASKER.register(value)
        name = _check_name(name)
        try:
            self._client.set_secret(name, value)
        except ResourceExistsError as exc:
            if _inner_code(exc) != DELETED_BUT_RECOVERABLE:
                raise
            # The poller's wait() returns once GET /secrets/{name} answers again: recovered.
            self._client.begin_recover_deleted_secret(name).wait()
            self._client.set_secret(name, value)

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        # delete_ succeeds when the secret is already gone.
        with contextlib.suppress(ResourceNotFoundError):
            self._client.begin_delete_secret(_check_name(name)).wait()

    def names(self, prefix: str = "") -> list[str]:
        return sorted(name for p in self._client.list_properties_of_secrets()
                      if (name := p.name) is not None and name.startswith(prefix))
