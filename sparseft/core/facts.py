"""Facts about a base model that the core reads, asked of its backend and written once.

Its E0s buffer and data buffers, head names, node-feature irreps, the E0s options and the
wrapper base class. Imports no model library.
"""

from __future__ import annotations

from typing import Any

import torch

# A base model of any backend. Typed loosely on purpose: torch.nn.Module's __getattr__ hides
# the submodules and buffers (r_max, atomic_numbers) from checkers.
Model = Any

DEFAULT_HEADS = ("Default",)  # the head list of a single-head model without ``heads``
E0S_OPTIONS = ("foundation", "average", "estimated")  # besides an explicit {element: eV} map


def model_heads(model: Model) -> list[str]:
    """Head names of a base model (``["Default"]`` for a single-head model)."""
    return list(getattr(model, "heads", None) or DEFAULT_HEADS)


def _backend(model: Model):
    from .backend import backend_of

    return backend_of(model)


def feature_irreps(model: Model) -> list:
    """e3nn ``Irreps`` of each interaction layer's node features, in ``node_feats`` order."""
    from .backend import plain

    return _backend(model).feature_irreps(plain(model))


def e0s_name(model: Model) -> str:
    """Name of the base model's E0s buffer (per-element reference energies)."""
    return _backend(model).e0s_buffer


def data_buffers(model: Model) -> tuple[str, ...]:
    """Learned tensors the base model keeps as buffers (E0s, scales): fingerprinted and cast."""
    return _backend(model).data_buffers


def adaptable_buffers(model: Model) -> tuple[str, ...]:
    """Buffers a fine-tune may change (and adapter files store): the E0s."""
    return (e0s_name(model),)


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


class WrapsModel(torch.nn.Module):
    """A module around a base model (``self.model``) that shows the model-like attributes data
    and evaluation code read: element table, cutoff, head names."""

    model: Model

    @property
    def atomic_numbers(self):
        return self.model.atomic_numbers

    @property
    def r_max(self):
        return self.model.r_max

    @property
    def heads(self):
        return model_heads(self.model)


def e0s_buffer(model: Model) -> torch.Tensor:
    """The E0s buffer of a base model (``[heads, elements]`` or ``[elements]``)."""
    return model.get_buffer(e0s_name(model))


def e0s_values(model: Model) -> torch.Tensor:
    """The E0s the base model predicts with, ``[elements]`` (a view into its buffer)."""
    from .backend import plain

    buffer = e0s_buffer(model)
    return buffer.reshape(-1, buffer.shape[-1])[_backend(model).e0s_row(plain(model)) or 0]


@torch.no_grad()
def write_e0s(model: Model, values: torch.Tensor) -> None:
    """Set the E0s the base model predicts with: its backend's row of the buffer, or every row."""
    from .backend import plain

    buffer = e0s_buffer(model)
    values = values.to(buffer)
    row = _backend(model).e0s_row(plain(model))
    if row is not None:
        buffer.reshape(-1, buffer.shape[-1])[row].copy_(values)
    else:
        buffer.copy_(values.expand_as(buffer) if buffer.dim() == 2 else values)
