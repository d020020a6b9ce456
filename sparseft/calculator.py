"""ASE calculator for MD: a merged model file, or a base model plus an adapter directory,
with a choice of energy head and magnetic moments from a moment head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes

from ._compat import torch
from .predict import atoms_to_batch


class Calculator(AseCalculator):
    """``energy``, ``free_energy``, ``forces``, (periodic cells) ``stress`` and, when the model
    has a moment head, ``magmoms`` (per atom: a number, or an (x, y, z) vector for a vector
    head) and ``magmom`` (their sum, collinear heads only).

    ``model`` is a path to a ``.model`` file (a pickle: only load trusted files; a fine-tune's
    ``merged.model`` or ``merged_with_heads.model``), ``"embedded"``, or a loaded module (plain
    or adapted); ``adapter`` is an adapter directory to apply to it. ``head`` picks the energy
    head: an extra energy head's name, or a head of a multi-head mace model (default: the
    foundation's). ``magmom_head`` picks the moment head when there are several. Adapted
    models are merged once, so MD runs at the speed of a plain model. ``device``: ``cpu``,
    ``cuda``, ``cuda:N`` or ``auto`` (CUDA when torch sees a GPU).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magmoms", "magmom"]

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        *,
        adapter: str | Path | None = None,
        head: str | None = None,
        magmom_head: str | None = None,
        dtype: str | torch.dtype | None = None,
        device: str = "cpu",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from .devices import resolve_device

        self.model = _prepare(model, adapter=adapter, head=head, dtype=dtype, device=resolve_device(device))
        extra = dict(getattr(self.model, "output_heads", None) or {})
        energy_heads = [n for n, h in extra.items() if h.property == "energy"]
        moment_heads = [n for n, h in extra.items() if h.property == "magmoms"]
        model_heads = list(getattr(self.model, "heads", None) or [])
        if head is not None and head not in energy_heads and head not in model_heads:
            raise ValueError(f"head {head!r} not found; energy heads: {['(foundation)'] + energy_heads + model_heads}")
        self.energy_head = head if head in energy_heads else None
        self.head = head if head in model_heads else None
        if magmom_head is not None and magmom_head not in moment_heads:
            raise ValueError(f"magmom_head {magmom_head!r} not found; moment heads: {moment_heads or 'none'}")
        if magmom_head is None and len(moment_heads) > 1:
            raise ValueError(f"the model has several moment heads {moment_heads}: pick one with magmom_head=")
        self.magmom_head = magmom_head or (moment_heads[0] if moment_heads else None)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if ("magmoms" in properties or "magmom" in properties) and self.magmom_head is None:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("this model has no magnetic-moment head")
        # Stress for every fully periodic cell, asked for or not: it costs ~0.2 % of the step
        # (forces already need the backward pass), while computing it only on request made MD
        # that reads forces and then stress (NPT, MDLogger(stress=True)) run the model twice a step.
        assert self.atoms is not None  # set by Calculator.calculate above
        want_stress = bool(self.atoms.pbc.all())
        batch = atoms_to_batch([self.atoms], self.model, head=self.head)
        extra = (
            {"derivative_heads": [self.energy_head]} if hasattr(self.model, "output_heads") else {}
        )  # one backward pass
        out = self.model(batch, training=False, compute_force=True, compute_stress=want_stress, **extra)
        source = out if self.energy_head is None else out["heads"][self.energy_head]
        energy = float(source["energy"].detach().cpu().double()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": source["forces"].detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = source["stress"].detach().cpu().double().numpy()[0]
            self.results["stress"] = np.array(
                [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
            )
        if self.magmom_head is not None:
            moments = out["heads"][self.magmom_head]["magmoms"].detach().cpu().double().numpy()
            self.results["magmoms"] = moments
            if moments.ndim == 1:
                self.results["magmom"] = float(moments.sum())


def _prepare(model, *, adapter, head, dtype, device) -> torch.nn.Module:
    from .heads import HeadedModel
    from .heads_file import unwrap
    from .loading import load_base_model
    from .model import AdaptedModel
    from .precision import parse_dtype

    model = unwrap(model)

    if isinstance(model, (str, Path)):
        extra_heads = []
        if adapter is not None:
            from .io import read_metadata

            extra_heads = [h.get("name") for h in read_metadata(adapter).get("heads") or []]
        model = load_base_model(model, dtype=dtype, device=device, head=None if head in extra_heads else head)
    elif (target := parse_dtype(dtype)) is not None:
        from .precision import to_dtype

        model = to_dtype(model, target)
    if adapter is not None:
        from .io import load_adapter

        if isinstance(model, (AdaptedModel, HeadedModel)):
            raise ValueError("adapter= needs a base model, not an already adapted one")
        model = load_adapter(model, adapter)
    if isinstance(model, AdaptedModel) or (isinstance(model, HeadedModel) and isinstance(model.model, AdaptedModel)):
        model = model.merge()  # plain weights (with copies of the heads): MD at a plain model's speed
    return model.to(device).eval()
