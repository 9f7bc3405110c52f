"""crlib's optional parts, and the extras that bring them.

`pip install crlib` drives real Azure. The sandbox (its server, TLS and tokens) needs aiohttp,
cryptography and PyJWT, which come with `pip install 'crlib[sandbox]'`. Code outside the sandbox
reaches it only through `sandbox_control()`, so that a missing extra is one clear line naming what
to install, not a ModuleNotFoundError from deep inside. (`crlib sandbox` says the same line.)
"""

from __future__ import annotations

from types import ModuleType

from .errors import CrlibError
from .sandbox.cli import absent_extra, missing_extra


class MissingExtra(CrlibError):
    """An optional part of crlib was asked for, and the extra that brings it is not installed."""


def sandbox_control(subject: str = "the sandbox") -> ModuleType:
    """`crlib.sandbox.control`; MissingExtra when the sandbox extra is not installed. Asked
    without importing the extra's modules: reading a running sandbox's status needs none of them."""
    why = absent_extra()
    if why is not None:
        raise MissingExtra(f"{subject} {why}")
    try:
        from .sandbox import control
    except ModuleNotFoundError as exc:
        why = missing_extra(exc)
        if why is None:
            raise
        raise MissingExtra(f"{subject} {why}") from None
    return control
