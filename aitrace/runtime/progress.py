"""A one-line progress display for compiles that take longer than a second."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time


@contextlib.contextmanager
def progress(label: str, delay: float = 1.0):
    """Show `label` with elapsed seconds on stderr once the block has run `delay` seconds."""
    if os.environ.get("AITRACE_PROGRESS", "1") == "0":
        yield
        return
    done = threading.Event()
    start = time.perf_counter()
    tty = sys.stderr.isatty()
    shown = []

    def show():
        if done.wait(delay):
            return
        shown.append(True)
        while True:
            t = time.perf_counter() - start
            if tty:
                sys.stderr.write(f"\r[aitrace] {label} ... {t:4.1f}s")
            elif len(shown) == 1:
                sys.stderr.write(f"[aitrace] {label} ...\n")
                shown.append(True)
            sys.stderr.flush()
            if done.wait(0.2):
                return

    th = threading.Thread(target=show, daemon=True)
    th.start()
    try:
        yield
    finally:
        done.set()
        th.join()
        if shown:
            end = "\r" if tty else ""
            sys.stderr.write(f"{end}[aitrace] {label} done in {time.perf_counter() - start:.1f}s\n")
            sys.stderr.flush()
