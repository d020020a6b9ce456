"""sparseft: parameter-efficient, symmetry-preserving fine-tuning of MACE potentials.

The public API: loading and adapting models, adapter files, prediction, the calculator, heads,
and every error type sparseft raises for bad input.

Names are imported on first use (PEP 562), so ``import sparseft`` and ``sparseft --help`` do
not load torch and mace; every module that needs them imports them through
:mod:`sparseft._compat`, which keeps mace's import order.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {  # public name -> module that defines it
    # models and adapters
    "AdaptedModel": "model",
    "AdapterConfig": "adapters",
    "FreezeConfig": "adapters",
    "LoRAConfig": "adapters",
    "RoSAConfig": "adapters",
    "METHODS": "adapters",
    "Selector": "select",
    "SparseConfig": "adapters",
    "WeightBlock": "blocks",
    "blocks": "blocks",
    "extend_elements": "elements",
    "fingerprint": "fingerprint",
    "load_model": "loading",
    "not_adaptable": "blocks",
    "wrap": "model",
    # files, prediction, MD
    "Calculator": "calculator",
    "load_adapter": "io",
    "predict": "predict",
    "save_adapter": "io",
    # heads
    "HeadConfig": "heads",
    "HeadedModel": "heads",
    "build_head": "heads",
    # errors and warnings
    "AdapterConflictError": "model",
    "AdapterFileError": "io",
    "DataError": "labels",
    "ElementError": "elements",
    "HeadError": "heads",
    "ModelLoadError": "loading",
    "RecipeError": "recipe",
    "SelectionError": "select",
    "UnsupportedLayoutError": "blocks",
    "UntrustedModelWarning": "trust",
    "torch": "_compat",
}
_SHADOWED = {"blocks", "fingerprint", "predict"}  # functions named like the module they live in

__all__ = [n for n in _EXPORTS if n != "torch"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sparseft' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    types.ModuleType.__setattr__(sys.modules[__name__], name, value)
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Keeps ``sparseft.predict`` (and ``blocks``, ``fingerprint``) the function once its
    submodule is imported, as the eager ``from .predict import predict`` did."""

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
