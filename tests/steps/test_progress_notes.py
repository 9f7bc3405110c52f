"""Long waits say what they wait for, once per change, with the next sync window in words."""

from __future__ import annotations

import datetime as dt

from crlib import progress
from crlib.steps.checks import SyncWait


def test_a_note_prints_once_per_change_with_the_time_waited(capsys):
    progress.done_waiting("t")
    for message in ("waiting for A", "waiting for A", "waiting for B", "waiting for B"):
        progress.note("t", message)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "t: waiting for A"
    assert len(lines) == 2 and lines[1].startswith("t: waiting for B (") and lines[1].endswith(" s)")
    progress.done_waiting("t")
    progress.note("t", "waiting for B")
    assert capsys.readouterr().out == "t: waiting for B\n"  # a new wait starts counting again


def test_the_next_sync_window_in_words():
    wait = SyncWait("0 */4 * * *", dt.timedelta(hours=2))
    now = dt.datetime(2026, 12, 2, 13, 57, tzinfo=dt.UTC)
    assert wait.next_window_note(now) == "; the next sync window opens at 16:00 UTC (in 123 min)"
    assert SyncWait("* * * * *", None, fixed=30).next_window_note(now) == ""
