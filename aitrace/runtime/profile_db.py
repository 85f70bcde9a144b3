"""The kernel-profiling database: the winning configuration of each profiled kernel, kept in
SQLite under the cache directory (`<AITRACE_CACHE_DIR>/profile.sqlite`) so later compiles on the
same device build only the winners.

    db = ProfileDB()
    db.get(device, op, shape)                 -> Winner | None
    db.put(device, op, shape, config, ms, timings)

`device` is the GPU's name, `op` a signature of the kernel family (op, dtypes, layout, epilogue
structure: everything but the sizes), `shape` the problem size (or its bucket for dynamic dims).
`timings` maps every candidate that ran to its time, for people to read.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS winners (
    device TEXT NOT NULL, op TEXT NOT NULL, shape TEXT NOT NULL,
    config TEXT NOT NULL, ms REAL NOT NULL, timings TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (device, op, shape))
"""


@dataclass(frozen=True)
class Winner:
    config: str
    ms: float
    timings: dict


class ProfileDB:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else cache_dir() / "profile.sqlite"
        with self._connect() as c:
            c.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # a short-lived connection per call: several processes may profile at once
        return sqlite3.connect(self.path, timeout=30)

    def get(self, device: str, op: str, shape: str) -> Winner | None:
        with self._connect() as c:
            row = c.execute("SELECT config, ms, timings FROM winners WHERE device=? AND op=? AND shape=?",
                            (device, op, shape)).fetchone()
        return Winner(row[0], row[1], json.loads(row[2])) if row else None

    def put(self, device: str, op: str, shape: str, config: str, ms: float, timings: dict) -> None:
        with self._connect() as c:
            c.execute("INSERT OR REPLACE INTO winners VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (device, op, shape, config, float(ms), json.dumps(timings, sort_keys=True), time.time()))

    def entries(self) -> list[tuple]:
        """(device, op, shape, config, ms) of every entry, for reports."""
        with self._connect() as c:
            return c.execute("SELECT device, op, shape, config, ms FROM winners ORDER BY device, op, shape").fetchall()
