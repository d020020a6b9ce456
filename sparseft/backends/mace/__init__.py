"""The MACE backend: mace-torch models (``.model`` files and the embedded mini-foundation)."""

from __future__ import annotations

from pathlib import Path

from ...core.backend import Backend

E0S_BUFFER = "atomic_energies_fn.atomic_energies"  # isolated-atom energies, [heads, elements]
SCALE_BUFFER = "scale_shift.scale"
SHIFT_BUFFER = "scale_shift.shift"


class MaceBackend(Backend):
    """mace-torch 0.3.x ``MACE`` / ``ScaleShiftMACE`` models."""

    name = "mace"
    symmetry = "O(3)"
    e0s_buffer = E0S_BUFFER
    data_buffers = (E0S_BUFFER, SCALE_BUFFER, SHIFT_BUFFER)
    not_adaptable = {
        E0S_BUFFER: "E0s (isolated-atom energies): set by the E0s option, not trained",
        SCALE_BUFFER: "energy scale: a fixed normalisation",
        SHIFT_BUFFER: "energy shift: a fixed normalisation",
    }
    merged_file = "merged.model"
    accepted = "a mace-torch .model file"

    def accepts(self, name: str) -> bool:
        if name == "embedded" or name.endswith(".model"):
            return True
        path = Path(name)
        return path.exists() and path.suffix not in (".pth",) and not name.startswith("sevennet:")

    def shipped_names(self) -> list[str]:
        return ["embedded"]

    def load(self, name, *, dtype=None, device="cpu", head=None):
        from .loading import load_base_model

        return load_base_model(name, dtype=dtype, device=device, head=head)

    def owns(self, model) -> bool:
        from mace.modules.models import MACE

        return isinstance(model, MACE)

    def blocks(self, model) -> list:
        from ...blocks import catalogue
        from .layout import layout

        return catalogue(model, layout())

    def feature_irreps(self, model) -> list:
        from e3nn import o3

        return [o3.Irreps(str(product.linear.irreps_out)) for product in model.products]

    def to_dtype(self, model, dtype):
        from .precision import to_dtype

        return to_dtype(model, dtype)

    def graphs(self, atoms_list, model, *, labels=None, head=None, config_type_weights=None) -> list:
        from .graphs import graphs

        return graphs(atoms_list, model, labels=labels, head=head, config_type_weights=config_type_weights)

    def collate(self, items):
        from ...core.graph import collate

        return collate(items)

    def energy_readout(self, model) -> dict:
        import copy

        from ...heads.base import HeadError

        for attr in ("readouts", "scale_shift"):
            if not hasattr(model, attr):
                raise HeadError(f"the base model ({type(model).__name__}) has no {attr}: not a ScaleShiftMACE")
        return {"readouts": copy.deepcopy(model.readouts), "scale_shift": copy.deepcopy(model.scale_shift)}

    def readout_energies(self, modules, features, data):
        """mace's energy form without E0s: ``scale * sum_layers readout_l(h_l) + shift``."""
        import torch

        batch = data["batch"]
        node_heads = torch.zeros_like(batch)
        rows = torch.arange(batch.shape[0], device=batch.device)
        layers = features.layers
        node_es = 0.0
        for i, readout in enumerate(modules.readouts):
            feats = layers[-1] if len(modules.readouts) == 1 else layers[i]
            node_es = node_es + readout(feats, node_heads)[rows, node_heads]
        return modules.scale_shift(node_es, node_heads)

    def export_head(self, model, head):
        from .export import export_head

        return export_head(model, head)

    def write_native_heads(self, model, out_dir, log) -> None:
        """``merged_multihead.model``: a native mace multi-head model for MACE's tools."""
        from ...export import ExportError, energy_heads
        from ...files import save_torch, write_file_atomically
        from .export import to_mace_multihead

        try:
            native = to_mace_multihead(model.model, energy_heads(model))
        except ExportError as exc:
            log(f"note: no merged_multihead.model: {exc}")
            return
        write_file_atomically(out_dir / "merged_multihead.model", lambda tmp: save_torch(native, tmp))
        log(
            f"merged_multihead.model: mace heads {list(native.heads)} (MACECalculator(head=...), "
            "mace_create_lammps_model --head, mace_eval_configs --head)"
        )

    def save_merged(self, model, path) -> None:
        from ...files import save_torch

        save_torch(model, path)


BACKEND = MaceBackend()
