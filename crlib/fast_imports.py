"""Imports that would otherwise cost seconds for nothing crlib uses.

jsonschema imports every optional format checker that is installed. One of them, rfc3987-syntax
(which JupyterLab's jupyter-events pulls in through jsonschema[format-nongpl]), compiles its lark
grammars at import: about 3-4 s on a small machine. crlib checks no formats: the IoT Edge schemas
are validated without a format checker, and nbformat (papermill's, when it loads a notebook)
validates notebooks without one either. So while jsonschema first loads, that one module is refused,
and jsonschema leaves out its "iri" check, as it does wherever rfc3987-syntax is not installed.
Afterwards the module imports normally for anyone who asks for it by name.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_GRAMMAR_MODULE = "rfc3987_syntax"


@contextlib.contextmanager
def without_format_grammars() -> Iterator[None]:
    """Import jsonschema (or what imports it: nbformat, papermill) inside this block."""
    hidden = "jsonschema" not in sys.modules and _GRAMMAR_MODULE not in sys.modules
    if hidden:
        sys.modules[_GRAMMAR_MODULE] = None  # type: ignore[assignment]  # None makes the import fail
    try:
        yield
    finally:
        if hidden:
            del sys.modules[_GRAMMAR_MODULE]

