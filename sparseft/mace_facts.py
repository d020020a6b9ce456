"""Facts about mace-torch models that the rest of sparseft reads, written once.

Buffer names, the head-name fallback, the E0s options, the node-feature irreps and the
wrapper base class. A leaf: imports nothing of sparseft.
"""

from __future__ import annotations

from typing import Any

import torch

# A mace-torch MACE/ScaleShiftMACE module. Typed loosely on purpose: torch.nn.Module's
# __getattr__ hides the submodules and buffers (products, r_max, atomic_numbers) from checkers.
MaceModel = Any

E0S_BUFFER = "atomic_energies_fn.atomic_energies"  # isolated-atom energies, [heads, elements]
SCALE_BUFFER = "scale_shift.scale"
SHIFT_BUFFER = "scale_shift.shift"
DATA_BUFFERS = (E0S_BUFFER, SCALE_BUFFER, SHIFT_BUFFER)  # learned tensors that are buffers, not parameters
ADAPTABLE_BUFFERS = (E0S_BUFFER,)  # buffers a fine-tune may change (and adapter files store)
DEFAULT_HEADS = ("Default",)  # the head list of a single-head mace model without ``heads``
E0S_OPTIONS = ("foundation", "average", "estimated")  # besides an explicit {element: eV} map


def mace_heads(model: MaceModel) -> list[str]:
    """Head names of a mace model (``["Default"]`` for a single-head model)."""
    return list(getattr(model, "heads", None) or DEFAULT_HEADS)


def feature_irreps(model: MaceModel) -> list:
    """e3nn ``Irreps`` of each interaction layer's node features, in mace's concatenation order."""
    from e3nn import o3

    return [o3.Irreps(str(product.linear.irreps_out)) for product in model.products]


def check_e0s_option(value, where: str) -> str | None:
    """The error message for an E0s option that is none of :data:`E0S_OPTIONS`, a ``.json`` file
    nor an ``{element: eV}`` map of chemical symbols (or atomic numbers) to finite numbers, else None.
    Whether the elements are in the base model is checked once it is loaded."""
    import math

    from ase.data import atomic_numbers, chemical_symbols

    if value is None or (isinstance(value, str) and (value in E0S_OPTIONS or value.endswith(".json"))):
        return None  # None: not set (IsolatedAtom frames' energies, else the foundation's)
    if not isinstance(value, dict):
        return f"{where}: {value!r} is not one of {', '.join(E0S_OPTIONS)}, a .json file, or an {{element: eV}} map"
    for key, energy in value.items():
        if not (isinstance(key, int) and 0 < key < len(chemical_symbols)) and key not in atomic_numbers:
            return f"{where}: {key!r} is not a chemical symbol (or atomic number)"
        try:
            number = float(energy) if isinstance(energy, (int, float, str)) and not isinstance(energy, bool) else None
        except ValueError:
            number = None
        if number is None or not math.isfinite(number):
            return f"{where}.{key}: expected a finite number (eV), got {energy!r}"
    return None


class WrapsMaceModel(torch.nn.Module):
    """A module around a mace model (``self.model``) that shows the model-like attributes data
    and evaluation code read: element table, cutoff, mace head names."""

    model: MaceModel

    @property
    def atomic_numbers(self):
        return self.model.atomic_numbers

    @property
    def r_max(self):
        return self.model.r_max

    @property
    def heads(self):
        return mace_heads(self.model)


def e0s_buffer(model: MaceModel) -> torch.Tensor:
    """The E0s buffer of a mace model (``[heads, elements]``)."""
    return model.get_buffer(E0S_BUFFER)
