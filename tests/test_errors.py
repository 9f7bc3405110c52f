"""The exception tree drawn in crlib/errors.py's docstring is the tree of its classes."""

from __future__ import annotations

import inspect
import re

from crlib import errors


def drawn_tree() -> dict[str, str]:
    """Class -> parent, read from the box drawing in the module docstring."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)", line)
        if not match or not match["name"].endswith(("Error", "Failed", "Timeout", "Invalid", "Confirmed")):
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[match["name"]] = stack[-1][1]
        stack.append((depth, match["name"]))
    return parents


def actual_tree() -> dict[str, str]:
    return {name: cls.__mro__[1].__name__ for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.CrlibError) and cls is not errors.CrlibError}


def test_the_docstring_draws_every_class_under_its_parent():
    drawn = drawn_tree()
    assert drawn, "no tree found in crlib/errors.py's docstring"
    assert drawn == actual_tree()


def test_errors_raised_elsewhere_are_in_the_tree():
    from crlib import runbook

    assert runbook.RunFailed is errors.RunFailed
    assert "RunFailed" in drawn_tree() and "ManifestInvalid" in drawn_tree()
