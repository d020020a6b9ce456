"""The SevenNet backend: sevenn 0.13 checkpoints (SevenNet-0, SevenNet-l3i5, SevenNet-MF-0 at one
modality, your own ``.pth``).

Only this subpackage imports ``sevenn`` (through :mod:`._import`, the one place its e3nn
version check is passed).
"""

from __future__ import annotations

from ...core.backend import Backend
from .model import SCALE, SHIFT

DENOMINATORS = "net.<layer>_convolution.denominator"


class SevenNetBackend(Backend):
    """sevenn ``AtomGraphSequential`` models inside :class:`~.model.SevenNetModel`."""

    name = "sevennet"
    symmetry = "SO(3)"  # SevenNet-0 is built without parity (irreps 1e, 2e)
    e0s_buffer = SHIFT
    data_buffers = (SHIFT, SCALE)
    not_adaptable = {
        SHIFT: "per-element energy shift (sevenn's E0s): set by the E0s option, not trained",
        SCALE: "per-element energy scale: a fixed normalisation (sevenn's train_shift_scale: False)",
    }
    merged_file = "merged.pth"
    accepted = "a sevenn .pth checkpoint"

    def accepts(self, name: str) -> bool:
        return name.startswith("sevennet:") or name.endswith(".pth")

    def shipped_names(self) -> list[str]:
        from .checkpoint import shipped_names

        return shipped_names()

    def load(self, name, *, dtype=None, device="cpu", head=None):
        from ...precision import parse_dtype
        from .checkpoint import load

        # a multi-fidelity model's modality is its head (base.modality, or base.head)
        return load(name, dtype=parse_dtype(dtype), device=device, modality=None if head == "Default" else head)

    def e0s_row(self, model) -> int | None:
        """The modality's row of a multi-fidelity model's shift (the other modality keeps its own)."""
        return model.modal_index

    def owns(self, model) -> bool:
        from .model import SevenNetModel

        return isinstance(model, SevenNetModel)

    def blocks(self, model) -> list:
        from ...blocks import catalogue
        from .layout import LAYOUT

        return catalogue(model, LAYOUT)

    def feature_irreps(self, model) -> list:
        return model.feature_irreps()

    def to_dtype(self, model, dtype):
        from .checkpoint import to_dtype

        return to_dtype(model, dtype)

    def num_interactions(self, model) -> int:
        return model.num_interactions

    def graphs(self, atoms_list, model, *, labels=None, head=None, config_type_weights=None) -> list:
        from .graphs import graphs

        return graphs(atoms_list, model, labels=labels, config_type_weights=config_type_weights)

    def collate(self, items):
        from ...core.graph import collate

        return collate(items)

    def energy_readout(self, model) -> dict:
        import copy

        net = model.net
        return {
            "hidden": copy.deepcopy(net.reduce_input_to_hidden.linear),
            "energy": copy.deepcopy(net.reduce_hidden_to_energy.linear),
            "scale": copy.deepcopy(net.rescale_atomic_energy),  # per-element scale (shift: the head's E0s)
        }

    def readout_energies(self, modules, features, data):
        """sevenn's energy form without the per-element shift: ``scale_Z * energy(hidden(h_last))``."""
        scale = data["node_attrs"].to(features.layers[-1].dtype) @ modules.scale.scale
        return modules.energy(modules.hidden(features.layers[-1])).reshape(-1) * scale

    def export_head(self, model, head):
        """SevenNet-0 with ``head``'s readout and E0s (as the per-element shift) in place of the
        foundation's: a single-head sevenn checkpoint (multi-fidelity export is not supported)."""
        import copy

        import torch

        from ...core.facts import write_e0s
        from ...export import ExportError, energy_heads

        heads = energy_heads(model)
        if head is None or head not in heads:
            raise ExportError(
                f"a SevenNet model is exported one energy head at a time: pass --head (energy heads: {list(heads)})"
            )
        source = heads[head]
        trunk = copy.deepcopy(getattr(model.model, "base", model.model))
        net = trunk.net
        with torch.no_grad():
            net.reduce_input_to_hidden.linear.load_state_dict(source.hidden.state_dict())
            net.reduce_hidden_to_energy.linear.load_state_dict(source.energy.state_dict())
            net.rescale_atomic_energy.scale.copy_(source.scale.scale)
        write_e0s(trunk, source.atomic_energies)  # a multi-fidelity model: its modality's row
        return trunk

    def save_merged(self, model, path) -> None:
        from .checkpoint import save

        save(model, path)


BACKEND = SevenNetBackend()
