"""The public surface: everything in __all__ exists, and optional arguments are keyword-only."""

from __future__ import annotations

import inspect

import pytest

import meshfit

# Positional parameters with defaults that read naturally in order (none so far).
ALLOWED_POSITIONAL_DEFAULTS: set[tuple[str, str]] = set()


def test_all_names_exist():
    for name in meshfit.__all__:
        assert hasattr(meshfit, name), name
    assert sorted(meshfit.__all__) == meshfit.__all__


@pytest.mark.parametrize("name", [n for n in meshfit.__all__ if callable(getattr(meshfit, n))])
def test_optional_arguments_are_keyword_only(name):
    obj = getattr(meshfit, name)
    if inspect.isclass(obj):
        if issubclass(obj, Exception | Warning) or not hasattr(obj, "__dataclass_fields__"):
            return
    sig = inspect.signature(obj)
    for p in sig.parameters.values():
        if p.default is not inspect.Parameter.empty and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert (name, p.name) in ALLOWED_POSITIONAL_DEFAULTS, (
                f"{name}({p.name}=...) should be keyword-only"
            )
