"""Masked losses and error metrics: a frame contributes only the labels it carries."""

from __future__ import annotations

from dataclasses import dataclass

from .._compat import torch


@dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0
    forces: float = 10.0
    stress: float = 1.0


def _atoms_per_graph(batch) -> torch.Tensor:
    return (batch["ptr"][1:] - batch["ptr"][:-1]).to(batch["positions"].dtype)


def _masked_mean(sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted mean; entries with zero weight are dropped even when NaN (stress of a cluster)."""
    total = mask.sum()
    return torch.where(mask > 0, sq * mask, torch.zeros_like(sq)).sum() / total.clamp(min=1e-12)


def loss_terms(batch, out) -> dict[str, torch.Tensor]:
    """Mean squared errors (energy per atom, force components, stress components), each over the
    frames that carry that label (mace's per-frame ``*_weight`` fields are 0 where missing)."""
    n = _atoms_per_graph(batch)
    terms = {}
    e_mask = batch["weight"] * batch["energy_weight"]
    terms["energy"] = _masked_mean(((out["energy"] - batch["energy"]) / n) ** 2, e_mask)
    f_mask = (batch["weight"] * batch["forces_weight"])[batch["batch"]].unsqueeze(-1).expand_as(out["forces"])
    terms["forces"] = _masked_mean((out["forces"] - batch["forces"]) ** 2, f_mask)
    if out.get("stress") is not None and "stress" in batch:
        s_mask = (batch["weight"] * batch["stress_weight"]).view(-1, 1, 1).expand_as(out["stress"])
        terms["stress"] = _masked_mean((out["stress"] - batch["stress"]) ** 2, s_mask)
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    return sum(getattr(weights, name) * value for name, value in terms.items())


class ErrorAccumulator:
    """Sums of absolute and squared errors over a split, masked by label presence."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def _add(self, name: str, diff: torch.Tensor, mask: torch.Tensor):
        m = mask.detach().double()
        d = torch.where(m > 0, diff.detach().double(), torch.zeros_like(m))
        s = self.sums.setdefault(name, [0.0, 0.0, 0.0])
        s[0] += float((d.abs() * m).sum())
        s[1] += float((d**2 * m).sum())
        s[2] += float(m.sum())

    def add(self, batch, out) -> None:
        n = _atoms_per_graph(batch)
        self._add("energy_per_atom", (out["energy"] - batch["energy"]) / n, batch["energy_weight"])
        f_mask = batch["forces_weight"][batch["batch"]].unsqueeze(-1).expand_as(out["forces"])
        self._add("forces", out["forces"] - batch["forces"], f_mask)
        if out.get("stress") is not None and "stress" in batch:
            s_mask = batch["stress_weight"].view(-1, 1, 1).expand_as(out["stress"])
            self._add("stress", out["stress"] - batch["stress"], s_mask)

    def metrics(self) -> dict[str, float | None]:
        """MAE and RMSE per quantity (eV/atom, eV/Å, eV/Å^3); None where no frame had the label."""
        out = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            out[f"{name}_mae"] = abs_sum / count if count else None
            out[f"{name}_rmse"] = (sq_sum / count) ** 0.5 if count else None
        return out
