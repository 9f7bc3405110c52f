"""A run's record made readable: `crlib archive show` (text) and `crlib archive report` (one HTML file).

Both read a sealed run folder and never write in it. `summary` gathers the facts once: what the
run was (site, kind, status), who ran it (local user, signed-in identity), when, where (tenant,
subscription, target), who signed the record, each notebook's and each step's outcome with its
changes (one line per change with its action's symbol, as `crlib run --plan` prints them), the
checks' evidence (from steps.jsonl), and the failure with how to resume. `show_text` prints them;
`report_html` lays them out as tables, adds what `archive.verify` found, and appends every
archived notebook converted by nbconvert's HTMLExporter, with its CSS inlined and no script or
stylesheet fetched from anywhere: the file opens offline and stays what it was when written.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import archive

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "run": ">"}


@dataclass
class Summary:
    """The facts `show` and `report` print, in the order they print them."""

    run: str
    facts: list[tuple[str, str]]  # (label, value): what, who, when, where, signer
    notebooks: list[dict[str, str]]
    steps: list[dict[str, Any]]  # step, notebook, status, duration_s, changes [(symbol, line)], evidence [line]
    failure: list[str] = field(default_factory=list)  # the failure and the resume hint, when it failed


def _events(run_dir: Path) -> list[dict]:
    try:
        text = archive.read_private(run_dir / "steps.jsonl").decode()
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "(not finished)"
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes)} min {rest:.0f} s" if minutes else f"{rest:.1f} s"


def signer_text(run_dir: Path) -> str:
    check = archive.signature(run_dir)
    if check.problems and not check.key_id:
        return "; ".join(check.problems)
    said = f"{check.signer}, at {check.signed_at}"
    return said + (f" (does not hold: {'; '.join(check.problems)})" if check.problems else "")


def summary(run_dir: Path | str) -> Summary:
    """The run's facts from run.json, steps.jsonl and SIGNATURE (read without following a symlink)."""
    run_dir = Path(run_dir)
    record = archive.read_record(run_dir)
    operator = record.get("operator") or {}
    target = record.get("target") or {}
    ran = record.get("ran") or [s["step"] for s in record.get("steps", [])]
    facts = [("run", record.get("run", run_dir.name)), ("site", str(record.get("site"))),
             ("kind", archive.record_kind(record)), ("steps", ", ".join(ran) or "(none)"),
             ("status", str(record.get("status"))),
             ("operator", f"{operator.get('local_user', '?')} (local user), "
                          f"{operator.get('identity') or 'no identity: the target was not reached'} (signed in)"),
             ("started", str(record.get("started"))), ("finished", str(record.get("finished"))),
             ("duration", _duration(record.get("duration_s"))),
             ("tenant", str(record.get("tenant") or "(not reached)")),
             ("subscription", str(record.get("subscription") or "(not reached)")),
             ("target", " ".join(str(v) for v in (target.get("kind"), target.get("arm_endpoint")) if v)),
             ("crlib", str(record.get("crlib_version"))),
             ("signed by", signer_text(run_dir))]
    notebooks = [{"notebook": n["name"], "status": n["status"], "duration": _duration(n.get("duration_s"))
                  if n.get("duration_s") is not None else "",
                  "failure": " ".join(str(n[k]) for k in ("failure", "step") if n.get(k))}
                 for n in record.get("notebooks", [])]
    details = {e["step"]: e.get("details") or {} for e in _events(run_dir) if e.get("event") == "result"}
    steps = []
    for step in record.get("steps", []):
        changes = [(SYMBOLS.get(c.get("action", ""), "?"), str(c.get("summary"))) for c in step.get("plan") or []]
        if not changes:
            changes = [("", line) for line in step.get("changes") or []]
        evidence = details.get(step["step"], {}).get("evidence") or []
        steps.append({"step": step["step"], "notebook": step.get("notebook", ""), "status": step.get("status", ""),
                      "duration_s": step.get("duration_s"), "changes": changes,
                      "evidence": [str(line) for line in evidence] if isinstance(evidence, list) else []})
    failure = []
    failed = record.get("failed")
    if record.get("status") != "succeeded" and failed:
        where = f"in {failed['notebook']} at step {failed['step']}" if failed.get("notebook") else \
            failed.get("step", "before any notebook")
        failure = [f"failed {where} ({failed.get('reason')}): {failed.get('error')}",
                   f"after fixing it: crlib run --resume {run_dir}"]
    elif record.get("status") == "running":
        failure = ["the record was never finished: the run was killed before it could seal the folder"]
    return Summary(run_dir.name, facts, notebooks, steps, failure)


def show_text(run_dir: Path | str) -> str:
    """The summary as text, for a terminal."""
    found = summary(run_dir)
    width = max(len(label) for label, _ in found.facts)
    lines = [f"{label + ':':<{width + 1}} {value}" for label, value in found.facts]
    lines += ["", "notebooks:"]
    lines += [f"  {n['notebook']:<24} {n['status']:<10} {n['duration']:<12} {n['failure']}".rstrip()
              for n in found.notebooks]
    lines += ["", "steps:"]
    for step in found.steps:
        lines.append(f"  {step['step']:<14} {step['status']:<10} {step['notebook']}")
        lines += [f"      {symbol} {line}" if symbol else f"      {line}" for symbol, line in step["changes"]]
        lines += [f"      = {line}" for line in step["evidence"]]
    if not found.steps:
        lines.append("  (no step ran)")
    if found.failure:
        lines += ["", *found.failure]
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1b1b1b; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table.crlib { border-collapse: collapse; margin: 0.5em 0; }
table.crlib th, table.crlib td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
table.crlib th { background: #f0f0f0; }
.status-succeeded, .status-passed, .status-completed { color: #0a6e0a; font-weight: bold; }
.status-failed { color: #b00020; font-weight: bold; }
.verified { color: #0a6e0a; } .not-verified { color: #b00020; }
ul.changes { margin: 0; padding-left: 1.2em; } code { white-space: pre-wrap; }
section.notebook { border-top: 3px solid #444; margin-top: 3em; padding-top: 1em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _rows(rows: list[list[str]], head: list[str]) -> str:
    """A table; cells are HTML already escaped by the caller."""
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="crlib"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _status(value: str) -> str:
    return f'<span class="status-{_e(value)}">{_e(value)}</span>'


def summary_html(found: Summary, verification: list[str], verified_files: int) -> str:
    parts = [f"<h1>crlib run {_e(found.run)}</h1>", '<section id="summary">', "<h2>Summary</h2>",
             _rows([[_e(label), _status(value) if label == "status" else _e(value)]
                    for label, value in found.facts], ["", ""])]
    if verification:
        parts.append(f'<p class="not-verified" id="verification"><b>NOT verified</b> ({len(verification)} '
                     "problems):</p><ul>" + "".join(f"<li>{_e(p)}</li>" for p in verification) + "</ul>")
    else:
        parts.append(f'<p class="verified" id="verification"><b>Verified</b> when this report was written: '
                     f"{verified_files} files match SHA256SUMS, the signature holds, no secret found. The signer "
                     "is not pinned here: pin it with <code>crlib archive verify --key-id</code>.</p>")
    if found.failure:
        parts.append('<h2>Failure</h2><p class="status-failed">' + "<br>".join(_e(f) for f in found.failure) + "</p>")
    parts += ["<h2>Notebooks</h2>", _rows([[_e(n["notebook"]), _status(n["status"]), _e(n["duration"]),
                                             _e(n["failure"])] for n in found.notebooks],
                                           ["notebook", "status", "duration", "failure"])]
    step_rows = []
    for step in found.steps:
        changes = "".join(f"<li><code>{_e(symbol)}</code> {_e(line)}</li>" if symbol else f"<li>{_e(line)}</li>"
                          for symbol, line in step["changes"])
        evidence = "".join(f"<li>{_e(line)}</li>" for line in step["evidence"])
        step_rows.append([_e(step["step"]), _e(step["notebook"]), _status(step["status"]),
                          f'<ul class="changes">{changes}</ul>' if changes else "(none)",
                          f'<ul class="changes">{evidence}</ul>' if evidence else ""])
    parts += ["<h2>Steps</h2>", _rows(step_rows, ["step", "notebook", "status", "changes", "evidence"])
              if step_rows else "<p>No step ran.</p>", "</section>"]
    return "\n".join(parts)


def _notebook_body(path: Path) -> str:
    """One archived notebook as HTML (the body of nbconvert's lab template; its CSS comes once, in
    the head). No JavaScript: the archive keeps no widget state, and nothing may be fetched."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True, exclude_input_prompt=False)
    exporter.require_js_url = ""  # not fetched: no <script src> from a CDN
    exporter.mathjax_url = ""
    notebook = nbformat.reads(archive.read_private(path).decode(), as_version=4)
    body, _ = exporter.from_notebook_node(notebook)
    return body


def _notebook_parts(html_text: str) -> tuple[str, str]:
    """(inline styles of the head, the body's content) of a page nbconvert wrote."""
    styles = "\n".join(re.findall(r"<style[^>]*>.*?</style>", html_text, flags=re.S))
    match = re.search(r"<body[^>]*>(.*)</body>", html_text, flags=re.S)
    return styles, match.group(1) if match else html_text


_EXTERNAL = re.compile(r"<(script|link)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", flags=re.I)


def report_html(run_dir: Path | str, verification: list[str]) -> str:
    """The whole report: the summary page, then each archived notebook. Nothing is fetched from
    outside the file (scripts and stylesheets referencing a URL are removed)."""
    run_dir = Path(run_dir)
    found = summary(run_dir)
    styles, sections = "", []
    for path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        page_styles, body = _notebook_parts(_notebook_body(path))
        styles = styles or page_styles  # the lab template's CSS, the same for every notebook
        sections.append(f'<section class="notebook" id="notebook-{_e(path.stem)}"><h2>Notebook {_e(path.stem)}</h2>'
                        f"{body}</section>")
    files = len(archive.archived_files(run_dir))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>crlib run {_e(found.run)}</title>'
            f"{styles}<style>{_STYLE}</style></head><body>{summary_html(found, verification, files)}"
            f"{''.join(sections)}</body></html>\n")
    # Whatever nbconvert's template links from a CDN (scripts, fonts' stylesheets) goes: the file is self-contained.
    page = re.sub(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(https?:)?//[^>]*>\s*</script>", "", page, flags=re.I)
    return re.sub(r"<link\b[^>]*\bhref\s*=\s*[\"']?(https?:)?//[^>]*>", "", page, flags=re.I)


def external_references(page: str) -> list[str]:
    """Scripts and stylesheets the page would fetch from a URL (a self-contained report has none)."""
    return [m.group(0) for m in _EXTERNAL.finditer(page)]
