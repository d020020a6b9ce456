"""sparseft: parameter-efficient, symmetry-preserving fine-tuning of MACE potentials."""

from ._compat import torch  # noqa: F401  (import order: mace before e3nn)
from .adapters import FreezeConfig, LoRAConfig, SparseConfig
from .blocks import WeightBlock, blocks, not_adaptable
from .calculator import Calculator
from .fingerprint import fingerprint
from .io import AdapterFileError, load_adapter, save_adapter
from .loading import ModelLoadError, load_model
from .model import AdaptedModel, AdapterConflictError, wrap
from .predict import predict
from .select import SelectionError, Selector

__version__ = "0.1.0"

__all__ = [
    "AdaptedModel", "AdapterConflictError", "Calculator", "AdapterFileError", "FreezeConfig", "LoRAConfig",
    "ModelLoadError", "SelectionError", "Selector", "SparseConfig", "WeightBlock", "blocks",
    "fingerprint", "load_adapter", "load_model", "not_adaptable", "predict", "save_adapter", "wrap",
]
