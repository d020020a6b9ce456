"""Masked losses and error metrics: a frame contributes only the labels it carries.

Every supervised quantity is a *task*: the foundation head's ``energy``, ``forces`` and
``stress``, an extra energy head's ``<head>.energy``/``.forces``/``.stress`` and a
magnetic-moment head's ``<head>.magmoms``. Labels of extra heads sit in the batch under
``<head>__<quantity>`` with a per-frame ``<head>__<quantity>_weight`` (0 = missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .._compat import torch

Pointwise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("mse", "huber")


def squared(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (pred - ref) ** 2


def pointwise(kind: str = "mse", delta: float = 0.01) -> Pointwise:
    """The per-entry loss of ``train.loss``: the squared error (``mse``) or the Huber loss with
    ``delta`` in each quantity's own units (eV/atom, eV/Å, eV/Å³; ``huber``: mace's and sevenn's
    fine-tuning loss, both at δ=0.01), summed and normalised per task like the squared error."""
    if kind == "mse":
        return squared
    if kind == "huber":
        return lambda pred, ref: torch.nn.functional.huber_loss(pred, ref, reduction="none", delta=delta)
    raise ValueError(f"train.loss: {kind!r} is not one of {', '.join(LOSSES)}")


@dataclass
class View:
    """One task on one batch: prediction, reference and a mask of the same shape."""

    task: str  # loss weight key: "energy", "forces", "stress", "<head>.energy", "<head>.magmoms", ...
    metric: str  # error metric name: "energy_per_atom", "forces", ..., "<head>.magmoms"
    pred: torch.Tensor
    ref: torch.Tensor
    mask: torch.Tensor


def _atoms_per_graph(batch) -> torch.Tensor:
    return (batch["ptr"][1:] - batch["ptr"][:-1]).to(batch["positions"].dtype)


def _per_atom(mask_per_graph, batch, like):
    mask = mask_per_graph[batch["batch"]]
    return mask.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _energy_views(prefix: str, out: dict, batch, labels: dict, weight) -> list[View]:
    """Views of an energy head: ``labels`` maps energy/forces/stress to (reference, per-frame weight)."""
    views = []
    n = _atoms_per_graph(batch)
    if "energy" in labels and out.get("energy") is not None:
        ref, w = labels["energy"]
        views.append(View(prefix + "energy", prefix + "energy_per_atom", out["energy"] / n, ref / n, weight * w))
    if "forces" in labels and out.get("forces") is not None:
        ref, w = labels["forces"]
        views.append(View(prefix + "forces", prefix + "forces", out["forces"], ref, _per_atom(weight * w, batch, ref)))
    if "stress" in labels and out.get("stress") is not None:
        ref, w = labels["stress"]
        views.append(
            View(
                prefix + "stress",
                prefix + "stress",
                out["stress"],
                ref,
                (weight * w).view(-1, 1, 1).expand_as(out["stress"]),
            )
        )
    return views


def _labels(batch, prefix: str, names) -> dict:
    return {
        n: (batch[prefix + n], batch[prefix + n + "_weight"])
        for n in names
        if prefix + n in batch and prefix + n + "_weight" in batch
    }


def views(batch, out) -> list[View]:
    """Every task with labels in ``batch`` and a prediction in ``out``."""
    weight = batch["weight"]
    foundation = {n: (batch[n], batch[n + "_weight"]) for n in ("energy", "forces", "stress") if n in batch}
    result = _energy_views("", out, batch, foundation, weight)
    for name, values in (out.get("heads") or {}).items():
        prefix = f"{name}__"
        if "magmoms" in values:
            labels = _labels(batch, prefix, ["magmoms"])
            if labels:
                ref, w = labels["magmoms"]
                result.append(
                    View(
                        f"{name}.magmoms", f"{name}.magmoms", values["magmoms"], ref, _per_atom(weight * w, batch, ref)
                    )
                )
        else:
            result += _energy_views(
                f"{name}.", values, batch, _labels(batch, prefix, ["energy", "forces", "stress"]), weight
            )
    return result


def _masked_sum(sq: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sum and total weight; entries with zero weight are dropped even when NaN (stress
    of a cluster)."""
    return torch.where(mask > 0, sq * mask, torch.zeros_like(sq)).sum(), mask.sum()


def loss_sums(batch, out, error: Pointwise = squared) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per task: (weighted sum of ``error`` over the entries that carry its label, total weight).
    Data-parallel training sums the totals over ranks before dividing."""
    return {v.task: _masked_sum(error(v.pred, v.ref), v.mask) for v in views(batch, out)}


def loss_terms(
    batch, out, totals: dict[str, torch.Tensor] | None = None, error: Pointwise = squared
) -> dict[str, torch.Tensor]:
    """Mean ``error`` (default: squared) of each task over the entries that carry its label;
    ``totals`` replaces the batch's own total weights (the global ones of a data-parallel step)."""
    return normalised(loss_sums(batch, out, error), totals)


def normalised(sums: dict, totals: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``{task: sum / total}`` from :func:`loss_sums`, with ``totals`` overriding the totals."""
    totals = totals or {}
    return {task: num / totals.get(task, den).clamp(min=1e-12) for task, (num, den) in sums.items()}


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``sum_task weight * term`` (``weights``: task -> weight; a task not in it weighs 0)."""
    values = [weights.get(name, 0.0) * value for name, value in terms.items()]
    return sum(values) if values else torch.zeros(())


class ErrorAccumulator:
    """Sums of absolute and squared errors over a split, masked by label presence."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def _add(self, name: str, diff: torch.Tensor, mask: torch.Tensor, ref: torch.Tensor):
        m = mask.detach().double()
        d = torch.where(m > 0, diff.detach().double(), torch.zeros_like(m))
        r = torch.where(m > 0, ref.detach().double(), torch.zeros_like(m))
        s = self.sums.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        s[0] += float((d.abs() * m).sum())
        s[1] += float((d**2 * m).sum())
        s[2] += float(m.sum())
        s[3] += float((r**2 * m).sum())

    def add(self, batch, out) -> None:
        for v in views(batch, out):
            self._add(v.metric, v.pred - v.ref, (v.mask > 0).to(v.pred.dtype), v.ref)

    def metrics(self) -> dict[str, float | None]:
        """MAE and RMSE per quantity (eV/atom, eV/Å, eV/Å^3, μB); None where no frame had the
        label; for forces also mace's relative RMSE, ``100 RMSE / RMS(reference)`` (%)."""
        out = {}
        for name, (abs_sum, sq_sum, count, ref_sq) in self.sums.items():
            out[f"{name}_mae"] = abs_sum / count if count else None
            out[f"{name}_rmse"] = (sq_sum / count) ** 0.5 if count else None
            if name.endswith("forces"):
                out[f"{name}_rel_rmse_percent"] = 100 * (sq_sum / ref_sq) ** 0.5 if count and ref_sq > 0 else None
        return out
