"""Progress for long steps: a live bar for a person, plain lines for a record (the image imports);
and for long waits (the deployment, a sync), one line each time what is awaited changes, with the
reason (`note`), so neither a person nor the archived notebook sees minutes of silence.

Interactively (JupyterLab, a terminal) `bar` is tqdm's auto bar: a widget in a notebook, a text bar
in a terminal. In a headless notebook (`crlib run`, papermill: the page's `interactive=False`) a
widget would be archived frozen at its first state ("0/6"), since the record keeps no widget state;
there `bar` prints one line per item done and a last line with the total, so the archived notebook
shows how it ended. The page sets the mode (`crlib.notebook.open_page`); steps only call `bar`.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

_headless = False


def set_headless(headless: bool) -> None:
    """Plain lines (True) or a live bar (False) from now on, in this process."""
    global _headless
    _headless = headless


class _Lines:
    """A progress 'bar' that prints a line per update and one at the end."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self._started = time.monotonic()

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.n += n
        print(f"{self.desc}: {self.n}/{self.total}" + (f" ({note})" if note else ""), file=sys.stdout, flush=True)

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        elapsed = time.monotonic() - self._started
        ended = "done" if self.n == self.total else "stopped"
        print(f"{self.desc}: {ended}, {self.n}/{self.total} {self.unit}s in {elapsed:.1f} s", file=sys.stdout,
              flush=True)


class _Bar:
    """tqdm's auto bar with the same `update(n, note)`."""

    def __init__(self, total: int, desc: str, unit: str):
        from tqdm.auto import tqdm

        self._bar: Any = tqdm(total=total, desc=desc, unit=unit)

    def update(self, n: int = 1, note: str | None = None) -> None:
        if note:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.close()


def bar(total: int, desc: str, unit: str) -> _Lines | _Bar:
    """Progress over `total` items: plain lines headless, a live bar otherwise."""
    return _Lines(total, desc, unit) if _headless else _Bar(total, desc, unit)


_last_note: dict[tuple[str, str], tuple[str, float]] = {}
_speaker = threading.local()  # a fleet's worker thread says which site it works for


def speaking_for(site: str | None) -> None:
    """This thread's notes are about `site` (a fleet runs sites in threads): they say so, and one
    site's notes never replace another's."""
    _speaker.site = site


def note(step: str, message: str) -> None:
    """Say what a wait is waiting for, once per change: e.g. `deploy: waiting for IoT Edge device
    'edge1': module connectedRegistry: backoff (12 s)`. The same message again prints nothing."""
    now = time.monotonic()
    site = getattr(_speaker, "site", None) or ""
    previous = _last_note.get((site, step))
    if previous is not None and previous[0] == message:
        return
    started = previous[1] if previous is not None else now
    _last_note[(site, step)] = (message, started)
    waited = f" ({now - started:.0f} s)" if previous is not None else ""
    print(f"{f'site {site}: ' if site else ''}{step}: {message}{waited}", file=sys.stdout, flush=True)


def done_waiting(step: str) -> None:
    """Forget a step's notes: its next wait starts counting again."""
    _last_note.pop((getattr(_speaker, "site", None) or "", step), None)
