"""The Backend interface and the registry that finds backends and their lowerings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core.ir import Graph


@dataclass
class Source:
    """What `Backend.lower` produces: the code text (None for `reference`), the graph it came
    from, and backend facts such as the kernel table and the buffer plan."""
    graph: Graph
    text: str | None = None
    info: dict = field(default_factory=dict)


class Backend:
    """lower(graph) -> Source; build(source) -> path of a shared library (or None);
    load(source, path) -> a callable taking and returning numpy arrays / DLPack tensors."""

    name: str = ""
    # Runs on host (CPU) memory: jit checks every input's device, naming it, before a call.
    host: bool = True
    # Chosen by backend=None only once it lowers every primitive (a backend under construction
    # is usable by name).
    complete: bool = True

    @classmethod
    def is_available(cls) -> bool:
        """Its toolchain is here: it lowers and builds (cuda: nvcc, with or without a GPU)."""
        return True

    @classmethod
    def can_run(cls) -> bool:
        """Its libraries also run here (cuda: a GPU too); backend=None only picks one that can."""
        return cls.is_available()

    def lower(self, graph: Graph, **options) -> Source:
        raise NotImplementedError

    def build(self, source: Source) -> str | None:
        raise NotImplementedError

    def load(self, source: Source, path: str | None) -> Callable:
        raise NotImplementedError


# name -> Backend class; filled by each backend module registering itself
BACKENDS: dict[str, type[Backend]] = {}
# Preference order for backend=None: the first complete one that can run here wins.
DEFAULT_ORDER = ("cuda", "hip", "cpu", "reference")


def register(cls: type[Backend]) -> type[Backend]:
    BACKENDS[cls.name] = cls
    return cls
