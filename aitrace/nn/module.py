"""`Module`: a PyTorch-style container of arrays and sub-modules, and a pytree of its arrays.

Attributes assigned on a Module are registered in assignment order: numpy arrays become
parameters (buffers such as batch-norm statistics included: inference has no difference), Module
values become children. `state_dict()` names them as PyTorch does (`encoder.layer.0.attention...`),
so the state_dict of the matching PyTorch / transformers model loads by name. Calling a module
runs `forward`; under `ait.jit` / `ait.trace` its arrays are constants of the traced graph.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from ..core import dtypes
from ..core.pytree import register_pytree_node
from ..runtime.interop import to_numpy


class Module:
    # keys of a PyTorch state_dict that hold no inference weight (counters); accepted and ignored
    _ignored_keys: tuple = ("num_batches_tracked",)

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_children", OrderedDict())

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        self._params.pop(name, None)
        self._children.pop(name, None)
        if isinstance(value, Module):
            self._children[name] = value
        elif isinstance(value, np.ndarray):
            self._params[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        return iter(self._children.items())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = ""):
        """(dotted name, array) for every array of this module and its children, in order."""
        for name, value in self._params.items():
            yield (f"{prefix}.{name}" if prefix else name), value
        for name, child in self._children.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self):
        return [v for _, v in self.named_parameters()]

    def state_dict(self) -> OrderedDict:
        return OrderedDict(self.named_parameters())

    def _owner(self, name: str):
        *path, leaf = name.split(".")
        m = self
        for p in path:
            m = m._children[p]
        return m, leaf

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays (numpy, torch tensors or any DLPack host array) by name. A missing or
        unexpected key (strict) raises KeyError naming it; a shape mismatch raises ValueError
        naming the key and both shapes. Values keep this module's dtype."""
        own = self.state_dict()
        given = {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in self._ignored_keys}
        if strict:
            missing = [k for k in own if k not in given]
            extra = [k for k in given if k not in own]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
                if extra:
                    parts.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''}")
                raise KeyError(f"load_state_dict into {type(self).__name__}: {'; '.join(parts)}")
        for k, v in given.items():
            if k not in own:
                continue
            a = to_numpy(v, k)
            if tuple(a.shape) != tuple(own[k].shape):
                raise ValueError(f"load_state_dict into {type(self).__name__}: {k!r} has shape "
                                 f"{list(a.shape)}, expected {list(own[k].shape)}")
            m, leaf = self._owner(k)
            setattr(m, leaf, np.ascontiguousarray(a, dtype=own[k].dtype))

    def to(self, dtype) -> "Module":
        """A copy whose floating-point arrays are `dtype` (e.g. ait.float16); integer ones kept."""
        dt = dtypes.dtype(dtype)
        out = copy.deepcopy(self)
        for k, v in out.state_dict().items():
            if dtypes.is_float(v.dtype):
                m, leaf = out._owner(k)
                setattr(m, leaf, v.astype(dt))
        return out

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._children.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


def _flatten(m: Module):
    names = [k for k, _ in m.named_parameters()]
    return [v for _, v in m.named_parameters()], (m, tuple(names))


def _unflatten(aux, leaves):
    m, names = aux
    out = copy.copy(m)
    _rebind(out)
    for k, v in zip(names, leaves):
        owner, leaf = out._owner(k)
        object.__getattribute__(owner, "_params")[leaf] = v
        object.__setattr__(owner, leaf, v)
    return out


def _rebind(m: Module) -> None:
    """Give a shallow copy its own attribute tables (and its children fresh copies), so new
    leaves never write into the original module."""
    object.__setattr__(m, "_params", OrderedDict(m._params))
    children = OrderedDict()
    for k, c in m._children.items():
        c = copy.copy(c)
        _rebind(c)
        children[k] = c
        object.__setattr__(m, k, c)
    object.__setattr__(m, "_children", children)


register_pytree_node(Module, _flatten, _unflatten)  # subclasses found through the MRO
