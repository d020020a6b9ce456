"""Output heads on a MACE model's node features: magnetic moments (collinear 0e, vector 1e)
and extra energy readouts for other levels of theory."""

from .base import Head, HeadError
from .config import HEAD_CLASSES, HeadConfig, build_from_config, build_head, head_config_from_dict
from .energy import EnergyHead
from .features import NodeFeatures, feature_irreps, split_features
from .forward import HeadedModel, forward_with_heads, split_heads
from .magmom import CollinearMagmomHead, VectorMagmomHead

__all__ = [
    "HEAD_CLASSES",
    "CollinearMagmomHead",
    "EnergyHead",
    "Head",
    "HeadConfig",
    "HeadError",
    "HeadedModel",
    "NodeFeatures",
    "VectorMagmomHead",
    "build_from_config",
    "build_head",
    "feature_irreps",
    "forward_with_heads",
    "head_config_from_dict",
    "split_features",
    "split_heads",
]
