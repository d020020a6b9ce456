"""The backend protocol: what the core asks of a model family, and the registry of families.

A backend is one subpackage of :mod:`sparseft.backends` exposing ``BACKEND``, an instance of
a :class:`Backend` subclass, and one line in :data:`sparseft.backends.REGISTRY`. Only that
subpackage imports its model library. Its models follow the core's model protocol: called as
``model(batch, training=, compute_force=, compute_stress=, compute_displacement=)`` on a batch
of the core's keys (:mod:`sparseft.core.keys`), returning ``energy``, ``forces``, ``stress``,
``node_energy`` and ``node_feats``, with attributes ``atomic_numbers``, ``r_max`` and ``heads``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: importing a backend package stays light (the CLI's parser)
    from .._compat import torch


class BackendError(ValueError):
    """A base model no registered backend accepts (one line, listing what is accepted)."""


class Backend:
    """One model family. Subclasses override every method that raises NotImplementedError."""

    name: str = ""
    symmetry: str = "O(3)"  # "O(3)": rotations and inversion; "SO(3)": rotations only
    e0s_buffer: str = ""  # per-element reference energies: ``[heads, elements]`` or ``[elements]``
    data_buffers: tuple[str, ...] = ()  # learned tensors kept as buffers (fingerprinted, cast, not adapted)
    not_adaptable: dict[str, str] = {}  # buffer name -> why it is listed but never adapted
    merged_file: str = "merged.model"  # what a fine-tune writes the merged model as
    accepted: str = ""  # what ``base.model`` may name, for messages ("a mace-torch .model file")

    # --- bases
    def accepts(self, name: str) -> bool:
        """Whether ``name`` (a recipe's ``base.model``) is this family's: a shipped name or a file."""
        raise NotImplementedError

    def shipped_names(self) -> list[str]:
        """The base names this backend loads without a file (for error messages)."""
        return []

    def load(self, name: str, *, dtype=None, device: str = "cpu", head: str | None = None) -> torch.nn.Module:
        """The base ``name`` at ``head`` (a multi-head model's head, a multi-fidelity one's modality)."""
        raise NotImplementedError

    def e0s_row(self, model: torch.nn.Module) -> int | None:
        """The row of a 2-D E0s buffer that ``model`` predicts with; None: every row is one head's
        and all are set alike (mace's heads)."""
        return None

    def owns(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` (a plain, unwrapped model) is of this family."""
        raise NotImplementedError

    # --- weights
    def blocks(self, model: torch.nn.Module) -> list:
        """Every trainable weight as :class:`sparseft.blocks.WeightBlock` s, each entry once."""
        raise NotImplementedError

    def feature_irreps(self, model: torch.nn.Module) -> list:
        """e3nn ``Irreps`` of each layer's node features, in the order of ``node_feats``."""
        raise NotImplementedError

    def to_dtype(self, model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        """``model`` in ``dtype``, derived constants (Clebsch-Gordan) included."""
        return model.to(dtype)

    def num_interactions(self, model: torch.nn.Module) -> int:
        return int(getattr(model, "num_interactions", 0))

    # --- data
    def graphs(self, atoms_list, model, *, labels=None, head=None, config_type_weights=None) -> list:
        """One item per structure (labels of :class:`sparseft.labels.Keys` ``labels`` attached)."""
        raise NotImplementedError

    def collate(self, items: list) -> dict:
        """One batch (a dict of tensors under the core's keys) of ``items``."""
        raise NotImplementedError

    # --- heads
    def energy_readout(self, model: torch.nn.Module) -> dict:
        """Copies of the modules that turn node features into per-node energies (without E0s),
        by attribute name: what a new energy head starts from (so it first predicts what the
        foundation head predicts)."""
        raise NotImplementedError(f"{self.name}: energy heads are not supported")

    def readout_energies(self, modules, features, data: dict) -> torch.Tensor:
        """Per-node energies (without E0s) of the modules of :meth:`energy_readout` (held by a
        head as ``modules``, any object with those attributes)."""
        raise NotImplementedError(f"{self.name}: energy heads are not supported")

    def export_head(self, model: torch.nn.Module, head: str | None) -> torch.nn.Module:
        """A plain model of this family whose energy is ``head``'s (``model``: a merged trunk with
        sparseft heads); None: the family's own multi-head form of every energy head."""
        raise NotImplementedError(f"{self.name}: sparseft export is not supported")

    def write_native_heads(self, model: torch.nn.Module, out_dir: Path, log) -> None:
        """Write a merged trunk's energy heads in the family's own multi-head file, if it has one
        (log a note otherwise)."""
        log(f"note: {self.name} has no multi-head file: export a head with sparseft export --head NAME")

    # --- outputs
    def save_merged(self, model: torch.nn.Module, path: Path) -> None:
        """Write a merged plain model as the family's own file (its tools load it)."""
        raise NotImplementedError


def registry() -> dict[str, Backend]:
    """Every registered backend by name (imported on first use)."""
    from ..backends import REGISTRY

    return {name: importlib.import_module(module).BACKEND for name, module in REGISTRY.items()}


def get(name: str) -> Backend:
    return registry()[name]


def plain(model: Any) -> torch.nn.Module:
    """The innermost model of wrappers (adapted models, heads: each keeps it as ``.model``)."""
    seen = 0
    from .._compat import torch

    while hasattr(model, "model") and isinstance(model.model, torch.nn.Module) and seen < 8:
        model = model.model
        seen += 1
    return model


def backend_of(model: Any) -> Backend:
    """The backend of ``model`` (or of the model it wraps)."""
    inner = plain(model)
    for backend in registry().values():
        if backend.owns(inner):
            return backend
    raise BackendError(f"{type(inner).__name__} is not a model of any sparseft backend ({', '.join(registry())})")


def backend_for(name: str) -> Backend:
    """The backend that loads ``name`` (a recipe's ``base.model``); a plain error listing the
    accepted forms otherwise."""
    backends = registry()
    for backend in backends.values():
        if backend.accepts(str(name)):
            return backend
    shipped = [n for b in backends.values() for n in b.shipped_names()]
    raise BackendError(
        f"{name}: not a model file or a name sparseft knows; accepted: "
        f"{', '.join(b.accepted for b in backends.values())}, or one of {', '.join(shipped)}. Named foundations "
        "that are not shipped (e.g. mace-mp's 'medium') need a download, which sparseft does not do (it runs "
        "offline): download the file and give its path"
    )
