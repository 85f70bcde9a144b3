"""Backends: `reference` (numpy) everywhere; native ones where their toolchain exists.

Each backend is a subpackage or module here that registers itself; none is listed centrally.
"""
import importlib
import pkgutil

from .base import BACKENDS, DEFAULT_ORDER, Backend, Source  # noqa: F401

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")


def available() -> list[str]:
    """Names of the backends usable on this machine, e.g. ["reference", "cpu", "cuda"]."""
    return sorted((n for n, cls in BACKENDS.items() if cls.is_available()),
                  key=lambda n: (n != "reference", n))


def default() -> str:
    """What backend=None picks: cuda where a GPU and nvcc are present, else cpu (DEFAULT_ORDER)."""
    return next(n for n in DEFAULT_ORDER if n in BACKENDS and BACKENDS[n].complete and BACKENDS[n].can_run())


def get(name: str | None) -> Backend:
    name = default() if name is None else name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    if not BACKENDS[name].is_available():
        raise RuntimeError(f"backend {name!r} is not available on this machine "
                           f"(available: {available()})")
    return BACKENDS[name]()
