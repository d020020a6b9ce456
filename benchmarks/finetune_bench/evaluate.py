"""Evaluation of a final model, one code path for every method and tool: energy / force
errors on a task's files, forgetting (with the base's E0s put back), and the weights that
differ from the base."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from .data import Task


class Evaluator:
    """Loads models and computes errors on a task's files; one code path for every method."""

    def __init__(self, task: Task):
        import ase.io

        self.task = task
        self.frames = {name: ase.io.read(getattr(task, name), ":") for name in ("valid", "test", "forget")}
        self.extra_tests = dict(task.extra.get("tests", {}))  # more test sets, e.g. acac at 600 K
        for name, path in self.extra_tests.items():
            self.frames[name] = ase.io.read(path, ":")
        import sparseft

        self.base = sparseft.load_model(task.base_model)
        self.base_state = {n: t.detach().clone() for n, t in self.base.state_dict().items()}
        self.base_e0s = self._e0s(self.base)
        # Forgetting subsets: frames of the forgetting set without any element of the target data
        # (collateral damage on chemistry the fine-tune never saw).
        target = set(task.extra.get("meta", {}).get("elements", []))
        self.subsets = {}
        if target:
            keep = [i for i, a in enumerate(self.frames["forget"]) if not target & set(a.get_chemical_symbols())]
            if 0 < len(keep) < len(self.frames["forget"]):
                name = f"forget_without_{'_'.join(sorted(target))}"
                self.frames[name] = [self.frames["forget"][i] for i in keep]
                self.subsets[name] = f"forgetting-set structures without {'/'.join(sorted(target))}"

    def forget_subsets(self, model) -> dict:
        return {name: self.errors(model, name, self.base_e0s) for name in self.subsets}

    @staticmethod
    def _e0s(model) -> dict[int, float]:
        from sparseft.e0s import current_e0s

        return current_e0s(model)

    def errors(self, model, split: str, e0s: dict[int, float] | None = None) -> dict:
        from sparseft.data import loader
        from sparseft.e0s import set_e0s
        from sparseft.predict import graphs

        if e0s is not None:
            model = copy.deepcopy(model)
            set_e0s(model, {z: e0s.get(z, v) for z, v in self._e0s(model).items()})
        from sparseft.labels import Keys

        data = graphs(self.frames[split], model, labels=Keys(stress=None, virials=None))
        e_err, f_err = [], []
        for batch in loader(data, 8, shuffle=False):
            out = model(batch, training=False, compute_force=True, compute_stress=False)
            n = (batch["ptr"][1:] - batch["ptr"][:-1]).double()
            e_err.append(((out["energy"].detach().double() - batch["energy"].double()) / n).numpy())
            f_err.append((out["forces"].detach().double() - batch["forces"].double()).numpy().reshape(-1))
        e = np.concatenate(e_err)
        f = np.concatenate(f_err)
        return {
            "energy_mae": float(np.abs(e).mean()),
            "energy_rmse": float(np.sqrt((e**2).mean())),
            "forces_mae": float(np.abs(f).mean()),
            "forces_rmse": float(np.sqrt((f**2).mean())),
            "frames": len(self.frames[split]),
        }

    def changed(self, model) -> dict:
        total = changed = 0
        unmatched = []
        for name, p in model.named_parameters():
            total += p.numel()
            ref = self.base_state.get(name)  # params, or buffers (mace_run_train makes some buffers params)
            if ref is None or ref.shape != p.shape:
                changed += p.numel()
                unmatched.append(name)
            else:
                changed += int((p.detach() != ref).sum())
        return {"model_parameters": total, "changed_parameters": changed, "unmatched_parameters": unmatched}


def base_row(task: Task, ev: Evaluator, e0s: dict[int, float]) -> dict:
    """Zero-shot base: target errors with the fine-tunes' E0s, forgetting reference with its own."""
    return {
        "test": ev.errors(ev.base, "test", e0s),
        "valid": ev.errors(ev.base, "valid", e0s),
        "forget": ev.errors(ev.base, "forget"),
        "forget_subsets": ev.forget_subsets(ev.base),
    }


def load_any_model(path: Path):
    """A final model for evaluation. mace_run_train's fine-tuned models hold the Bessel weights of
    the radial embedding as a parameter (not a buffer as in the base), which sparseft.load_model
    refuses to catalogue; evaluation needs no catalogue, so those load with torch.load."""
    import torch

    import sparseft

    try:
        return sparseft.load_model(path)
    except sparseft.ModelLoadError as exc:
        if "unsupported layout" not in str(exc):
            raise
        model = torch.load(path, map_location="cpu", weights_only=False)
        return model.eval()
