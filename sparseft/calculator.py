"""ASE calculator for MD: a merged model file, or a base model plus an adapter directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes

from ._compat import torch
from .predict import atoms_to_batch


class Calculator(AseCalculator):
    """``energy``, ``free_energy``, ``forces`` and (periodic cells) ``stress`` from a MACE model.

    ``model`` is a path to a ``.model`` file (a pickle: only load trusted files), ``"embedded"``,
    or a loaded module (plain or adapted); ``adapter`` is an adapter directory to apply to it.
    Adapted models are merged once, so MD runs at the speed of a plain model.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, *, adapter=None, head: str | None = None, dtype=None, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.model = _prepare(model, adapter=adapter, head=head, dtype=dtype, device=device)
        self.head = head if head in (getattr(self.model, "heads", None) or []) else None
        for p in self.model.parameters():
            p.requires_grad_(False)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        batch = atoms_to_batch([self.atoms], self.model, head=self.head)
        out = self.model(batch, training=False, compute_force=True, compute_stress=want_stress)
        energy = float(out["energy"].detach().cpu().double()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = out["stress"].detach().cpu().double().numpy()[0]
            self.results["stress"] = np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]])


def _prepare(model, *, adapter, head, dtype, device) -> torch.nn.Module:
    from .loading import load_base_model, parse_dtype
    from .model import AdaptedModel

    if isinstance(model, (str, Path)):
        model = load_base_model(model, dtype=dtype, device=device, head=head)
    elif parse_dtype(dtype) is not None:
        from .precision import to_dtype

        model = to_dtype(model, parse_dtype(dtype))
    if adapter is not None:
        from .io import load_adapter

        if isinstance(model, AdaptedModel):
            raise ValueError("adapter= needs a base model, not an already adapted one")
        model = load_adapter(model, adapter)
    if isinstance(model, AdaptedModel):
        model = model.merge()
    return model.to(device).eval()
