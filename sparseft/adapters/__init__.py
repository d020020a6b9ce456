"""Adapter methods. ``METHODS`` (method name -> config class) is the only list of them: a new
method is one module here that defines an :class:`AdapterConfig` and a :class:`BlockPart`,
plus its line below."""

from __future__ import annotations

from .base import AdapterConfig, BlockPart, ParamDelta, PrunablePart
from .freeze import FreezeConfig
from .lora import LoRAConfig
from .rosa import RoSAConfig
from .sparse import SparseConfig
from .sparse_modes import MODES as SPARSE_MODES  # noqa: F401 (fills the registry SparseConfig reads)

METHODS: dict[str, type[AdapterConfig]] = {
    cls.method: cls for cls in (SparseConfig, LoRAConfig, FreezeConfig, RoSAConfig)
}


def default_lr(configs) -> float:
    """``train.lr`` when a recipe sets none: the smallest ``default_lr`` of its adapters (full
    fine-tuning's 1e-3 wins in a mix; heads on a frozen model get 1e-3)."""
    return min((type(c).default_lr for c in configs), default=AdapterConfig.default_lr)


ALIASES = {"full": "freeze"}  # method: full = freeze of the selected (default: every) block


def config_from_dict(data: dict, where: str = "adapter") -> AdapterConfig:
    """Build an adapter config from ``{"method": ..., ...}``; unknown methods/keys raise."""
    names = ", ".join(sorted([*METHODS, *ALIASES]))
    if not isinstance(data, dict) or "method" not in data:
        raise ValueError(f"{where}: an adapter needs a 'method' (one of {names})")
    method = data["method"]
    if method in ALIASES:
        method, data = ALIASES[method], {**data, "method": ALIASES[method], "select": data.get("select")}
    if method not in METHODS:
        raise ValueError(f"{where}.method: unknown method {method!r}; valid: {names}")
    return METHODS[method].from_dict(data, where)


__all__ = [
    "AdapterConfig",
    "BlockPart",
    "ParamDelta",
    "PrunablePart",
    "FreezeConfig",
    "LoRAConfig",
    "SparseConfig",
    "RoSAConfig",
    "METHODS",
    "config_from_dict",
    "default_lr",
]
