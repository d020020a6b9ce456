"""Adapter methods: a registry from method name to config class and part factory."""

from __future__ import annotations

from . import freeze, lora, sparse
from .base import AdapterConfig, BlockPart, ParamDelta
from .freeze import FreezeConfig
from .lora import LoRAConfig
from .sparse import SparseConfig

METHODS = {
    "sparse": (SparseConfig, sparse.make_part),
    "lora": (LoRAConfig, lora.make_part),
    "freeze": (FreezeConfig, freeze.make_part),
}


def config_from_dict(data: dict, where: str = "adapter") -> AdapterConfig:
    """Build an adapter config from ``{"method": ..., ...}``; unknown methods/keys raise."""
    if not isinstance(data, dict) or "method" not in data:
        raise ValueError(f"{where}: an adapter needs a 'method' (one of {sorted(METHODS)})")
    method = data["method"]
    if method not in METHODS:
        raise ValueError(f"{where}.method: unknown method {method!r}; valid: {sorted(METHODS)}")
    return METHODS[method][0].from_dict(data, where)


__all__ = [
    "AdapterConfig", "BlockPart", "ParamDelta", "FreezeConfig", "LoRAConfig", "SparseConfig",
    "METHODS", "config_from_dict",
]
