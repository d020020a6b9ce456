"""sparseft: parameter-efficient, symmetry-preserving fine-tuning of MACE potentials.

The public API: loading and adapting models, adapter files, prediction, the calculator, heads,
and every error type sparseft raises for bad input.
"""

from ._compat import torch  # noqa: F401  (import order: mace before e3nn)
from .adapters import METHODS, AdapterConfig, FreezeConfig, LoRAConfig, SparseConfig
from .blocks import UnsupportedLayoutError, WeightBlock, blocks, not_adaptable
from .calculator import Calculator
from .elements import ElementError, extend_elements
from .fingerprint import fingerprint
from .heads import HeadConfig, HeadedModel, HeadError, build_head
from .io import AdapterFileError, load_adapter, save_adapter
from .labels import DataError
from .loading import ModelLoadError, UntrustedModelWarning, load_model
from .model import AdaptedModel, AdapterConflictError, wrap
from .predict import predict
from .recipe import RecipeError
from .select import SelectionError, Selector

__version__ = "0.1.0"

__all__ = [
    # models and adapters
    "AdaptedModel",
    "AdapterConfig",
    "FreezeConfig",
    "LoRAConfig",
    "METHODS",
    "Selector",
    "SparseConfig",
    "WeightBlock",
    "blocks",
    "extend_elements",
    "fingerprint",
    "load_model",
    "not_adaptable",
    "wrap",
    # files, prediction, MD
    "Calculator",
    "load_adapter",
    "predict",
    "save_adapter",
    # heads
    "HeadConfig",
    "HeadedModel",
    "build_head",
    # errors and warnings
    "AdapterConflictError",
    "AdapterFileError",
    "DataError",
    "ElementError",
    "HeadError",
    "ModelLoadError",
    "RecipeError",
    "SelectionError",
    "UnsupportedLayoutError",
    "UntrustedModelWarning",
]
