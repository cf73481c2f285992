"""The one dataclass mechanism for meshfit's pytrees.

``@pytree_dataclass`` makes a frozen dataclass whose fields are pytree children, except those
declared with ``static_field()``, which become hashable treedef metadata (image sizes, flags).

Unflattening bypasses ``__init__``/``__post_init__``: JAX rebuilds pytrees with tracers, ``None``
or arbitrary sentinels as leaves (``vmap`` axes, ``tree.map``), so input validation must run only
when a user constructs the object, never when JAX does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field stored in the treedef (must be hashable), not as a leaf."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Frozen dataclass registered as a pytree with key paths (for readable tree errors)."""
    cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    fields = dataclasses.fields(cls)
    data_names = tuple(f.name for f in fields if not f.metadata.get("static", False))
    meta_names = tuple(f.name for f in fields if f.metadata.get("static", False))
    keys = tuple(jax.tree_util.GetAttrKey(n) for n in data_names)

    def flatten_with_keys(obj):
        children = tuple((k, getattr(obj, n)) for k, n in zip(keys, data_names))
        return children, tuple(getattr(obj, n) for n in meta_names)

    def flatten(obj):
        return tuple(getattr(obj, n) for n in data_names), tuple(getattr(obj, n) for n in meta_names)

    def unflatten(meta, children):
        obj = object.__new__(cls)
        for n, v in zip(data_names, children):
            object.__setattr__(obj, n, v)
        for n, v in zip(meta_names, meta):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


def is_concrete(x: Any) -> bool:
    """True for a value we can inspect now (numpy or a committed jax array, not a tracer)."""
    return not isinstance(x, jax.core.Tracer) and hasattr(x, "shape") and hasattr(x, "dtype")
