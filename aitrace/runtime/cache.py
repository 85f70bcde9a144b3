"""The on-disk build cache: `AITRACE_CACHE_DIR` (default ~/.cache/aitrace).

Entries are keyed by a hash of the source, the compiler's identity and the flags (never the
constants' values). Builds happen under a per-entry file lock and land by atomic rename, so
concurrent processes neither clash nor build twice; each library's SHA-256 is stored beside it,
so a truncated or corrupted entry is detected and rebuilt.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    d = Path(os.environ.get("AITRACE_CACHE_DIR") or Path.home() / ".cache" / "aitrace")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_of(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def is_valid(lib: Path) -> bool:
    meta = lib.with_suffix(".sha256")
    try:
        return lib.is_file() and meta.read_text().strip() == _file_hash(lib)
    except OSError:
        return False


def cached_build(kind: str, key: str, build: Callable[[Path], None], files: dict | None = None,
                 filename: str = "lib.so") -> Path:
    """Path of the library for `key`, calling `build(tmp_path)` only if no valid entry exists.

    `files` (name -> text) are written beside the entry for people to read (the source)."""
    entry = cache_dir() / kind / key
    lib = entry / filename
    if is_valid(lib):
        return lib
    entry.mkdir(parents=True, exist_ok=True)
    with open(entry / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building this very entry
        if is_valid(lib):
            return lib
        for name, text in (files or {}).items():
            _atomic_write(entry / name, text.encode())
        fd, tmp = tempfile.mkstemp(dir=entry, suffix=".tmp" + lib.suffix)
        os.close(fd)
        try:
            build(Path(tmp))
            digest = _file_hash(Path(tmp))
            os.replace(tmp, lib)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _atomic_write(lib.with_suffix(".sha256"), digest.encode())
    return lib


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
