"""Pytrees: nested tuples, lists, dicts and None (plus registered classes) around array leaves."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

# type -> (flatten(x) -> (children, aux), unflatten(aux, children) -> x)
_NODES: dict[type, tuple[Callable, Callable]] = {}


def register_pytree_node(cls: type, flatten: Callable, unflatten: Callable) -> None:
    """Make instances of `cls` pytree nodes (nn.Module uses this)."""
    _NODES[cls] = (flatten, unflatten)


register_pytree_node(tuple, lambda t: (list(t), None), lambda _, c: tuple(c))
register_pytree_node(list, lambda t: (list(t), None), lambda _, c: list(c))
register_pytree_node(dict, lambda d: ([d[k] for k in sorted(d)], tuple(sorted(d))),
                     lambda keys, c: dict(zip(keys, c)))
register_pytree_node(type(None), lambda _: ([], None), lambda _, c: None)


class TreeDef(NamedTuple):
    """The structure of a pytree; hashable, so it can key caches. `node` is None for a leaf."""
    node: type | None
    aux: Any
    children: tuple

    @property
    def num_leaves(self) -> int:
        return 1 if self.node is None else sum(c.num_leaves for c in self.children)

    def __str__(self):
        if self.node is None:
            return "*"
        return f"{self.node.__name__}({', '.join(map(str, self.children))})"


LEAF = TreeDef(None, None, ())


class _NamedTupleNode:
    """Stand-in node type for every namedtuple class (the class itself is the aux data)."""


register_pytree_node(_NamedTupleNode, lambda t: (list(t), type(t)), lambda cls, c: cls(*c))


def _node_of(x):
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return _NamedTupleNode
    for cls in type(x).__mro__:
        if cls in _NODES:
            return cls
    return None


def flatten(tree) -> tuple[list, TreeDef]:
    leaves: list = []

    def go(x) -> TreeDef:
        cls = _node_of(x)
        if cls is None:
            leaves.append(x)
            return LEAF
        children, aux = _NODES[cls][0](x)
        return TreeDef(cls, aux, tuple(go(c) for c in children))

    return leaves, go(tree)


def unflatten(treedef: TreeDef, leaves) -> Any:
    it = iter(leaves)

    def go(td: TreeDef):
        if td.node is None:
            return next(it)
        return _NODES[td.node][1](td.aux, [go(c) for c in td.children])

    out = go(treedef)
    if next(it, _END) is not _END:
        raise ValueError(f"too many leaves for tree {treedef}")
    return out


_END = object()


def tree_map(fn: Callable, tree) -> Any:
    leaves, td = flatten(tree)
    return unflatten(td, [fn(x) for x in leaves])
