"""The sandbox's persistent state: JSON documents and the request log, in one SQLite file.

Every service keeps its resources here as documents keyed by a lowercase id (ARM ids are
case-insensitive). A request's writes happen inside one transaction, so a refused request
leaves nothing half-done.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    key TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    parent TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_type ON docs(type);
CREATE INDEX IF NOT EXISTS docs_parent ON docs(parent);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    service TEXT NOT NULL,
    host TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    api_version TEXT,
    status INTEGER NOT NULL,
    wrote INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    peer TEXT,
    user_agent TEXT
);
"""
# Columns added since the first schema, for state files written before them: (name, SQL type).
_ADDED_REQUEST_COLUMNS = (("peer", "TEXT"), ("user_agent", "TEXT"))


class Store:
    """A small document store. Not thread-safe: the sandbox serves from one event loop."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        for name, sql_type in _ADDED_REQUEST_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {sql_type}")
        self._depth = 0
        # Writes so far, per document type, and resets: what `revision` answers. In memory only (one
        # process writes state.db); a write rolled back still counts, which only costs a reader a look.
        self._revisions: dict[str, int] = {}
        self._resets = 0

    def revision(self, doc_type: str) -> tuple[int, int]:
        """Changes whenever a document of this type is written or deleted, so a background task can
        skip its scan while nothing it reads has changed."""
        return self._resets, self._revisions.get(doc_type, 0)

    def _touch(self, types) -> None:
        for doc_type in types:
            self._revisions[doc_type] = self._revisions.get(doc_type, 0) + 1

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit everything inside on success; roll all of it back on any exception."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- documents -----------------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT body FROM docs WHERE key = ?", (key.lower(),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, doc_type: str, body: dict, *, parent: str | None = None) -> None:
        was = self._db.execute("SELECT type FROM docs WHERE key = ?", (key.lower(),)).fetchone()
        if was and was[0] != doc_type:
            self._touch([was[0]])  # it stops being one of those
        self._db.execute(
            "INSERT INTO docs(key, type, parent, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET type = excluded.type, parent = excluded.parent, "
            "body = excluded.body",
            (key.lower(), doc_type, parent.lower() if parent else None, json.dumps(body)),
        )
        self._touch([doc_type])

    def delete(self, key: str) -> bool:
        self._touch([r[0] for r in self._db.execute("SELECT type FROM docs WHERE key = ?", (key.lower(),))])
        cur = self._db.execute("DELETE FROM docs WHERE key = ?", (key.lower(),))
        return cur.rowcount > 0

    def delete_tree(self, key: str) -> int:
        """Delete a document and every document whose key lies under it."""
        key = key.lower()
        where, args = "key = ? OR substr(key, 1, ?) = ?", (key, len(key) + 1, key + "/")
        self._touch([r[0] for r in self._db.execute(f"SELECT DISTINCT type FROM docs WHERE {where}", args)])
        cur = self._db.execute(f"DELETE FROM docs WHERE {where}", args)
        return cur.rowcount

    def children(self, parent: str, doc_type: str | None = None) -> list[dict]:
        sql, args = "SELECT body FROM docs WHERE parent = ?", [parent.lower()]
        if doc_type:
            sql += " AND type = ?"
            args.append(doc_type)
        return [json.loads(r[0]) for r in self._db.execute(sql + " ORDER BY key", args)]

    def by_type(self, doc_type: str, *, under: str | None = None) -> list[dict]:
        sql = "SELECT body FROM docs WHERE type = ?"
        args: list[object] = [doc_type]
        if under:
            under = under.lower() + "/"
            sql += " AND substr(key, 1, ?) = ?"
            args += [len(under), under]
        return [json.loads(r[0]) for r in self._db.execute(sql + " ORDER BY key", args)]

    def dump(self) -> dict[str, dict]:
        """Every document, keyed by its key: what state comparisons use."""
        return {k: json.loads(b) for k, b in self._db.execute("SELECT key, body FROM docs ORDER BY key")}

    def reset(self) -> None:
        self._resets += 1
        self._db.execute("DELETE FROM docs")
        self._db.execute("DELETE FROM requests")

    # -- request log ---------------------------------------------------------------------
    def log_request(
        self, *, service: str, host: str, method: str, path: str, api_version: str | None,
        status: int, wrote: bool, duration_ms: float, peer: str | None = None, user_agent: str | None = None,
    ) -> None:
        """One row per request. `peer` is the client's address as the sandbox saw it ("127.0.0.1:<port>":
        behind a proxy, the proxy's outbound socket), `user_agent` its User-Agent header."""
        self._db.execute(
            "INSERT INTO requests(time, service, host, method, path, api_version, status, wrote, "
            "duration_ms, peer, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), service, host, method, path, api_version, status, int(wrote), duration_ms, peer,
             user_agent),
        )

    def requests(self, since: int = 0) -> list[dict]:
        cur = self._db.execute("SELECT * FROM requests WHERE seq > ? ORDER BY seq", (since,))
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, row, strict=True)) for row in cur]
        for row in rows:
            row["wrote"] = bool(row["wrote"])
        return rows
