"""Lazy package exports: ``from dse.arch import summarize`` without importing JAX.

The schemas, analytics and results layer are plain Python; only training needs JAX
and Flax, whose import costs seconds. Package ``__init__`` files name their exports
here and each is imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``; ``modules`` maps a submodule to its exported names."""
    exports = {name: module for module, names in modules.items() for name in names}
    public = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__, public
