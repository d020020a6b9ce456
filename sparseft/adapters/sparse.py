"""L1-promoted sparse delta: most selected weights stay exactly at their pretrained value.

Training adds ``l1 * |delta|`` through a proximal (soft-threshold) step after each
optimiser step (:meth:`SparsePart.proximal_step`, the part's ``after_step``), which sets
small entries to exact zeros. :func:`sparseft.adapters.support.fix_support` then fixes the
support (a mask) for retraining only the surviving entries. Files store only the non-zero (or in-support) entries as
parameter-flat indices (int32) + values; a fixed support is
flagged by ``fixed_support`` and equals the stored indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._compat import torch
from ..ranges import ranged
from .base import AdapterConfig, PrunablePart


@dataclass(frozen=True)
class SparseConfig(AdapterConfig):
    """``l1``: strength of the L1 penalty; the proximal step shrinks every entry by ``lr * l1``.

    With Adam each step moves an entry by about ``lr``, so ``l1`` is the fraction of that
    step an entry loses each time: 0.1-0.5 gives clear sparsity, 1 or more keeps only
    entries pushed the same way on almost every step.
    """

    method = "sparse"
    l1: float = field(default=0.1, metadata=ranged(ge=0))

    def make_part(self, blocks, dtype, device) -> "SparsePart":
        return SparsePart(blocks, dtype, device, self.l1)


class SparsePart(PrunablePart):
    """A delta entry per selected weight, kept sparse by proximal steps or a fixed mask."""

    def __init__(self, blocks, dtype, device, l1: float):
        super().__init__(blocks)
        self.l1 = l1
        self.delta = torch.nn.Parameter(torch.zeros(self.index.numel(), dtype=dtype, device=device))
        self.register_buffer("mask", None, persistent=False)

    def values(self) -> torch.Tensor:
        return self.delta if self.mask is None else self.delta * self.mask

    @torch.no_grad()
    def proximal_step(self, lr: float, l1: float | None = None) -> None:
        """Soft-threshold: ``delta <- sign(delta) * max(|delta| - lr*l1, 0)``; re-applies the mask."""
        threshold = lr * (self.l1 if l1 is None else l1)
        if threshold > 0 and self.mask is None:
            self.delta.copy_(torch.nn.functional.softshrink(self.delta, threshold))
        if self.mask is not None:
            self.delta.mul_(self.mask)

    def after_step(self, lr: float, penalty_scale: float = 1.0) -> None:
        """The proximal step of ``penalty_scale * l1`` (0: only re-apply a fixed mask)."""
        self.proximal_step(lr, self.l1 * penalty_scale)

    def nonzero(self) -> torch.Tensor:
        """Bool vector: which entries differ from the pretrained weight."""
        return self.values().detach() != 0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Only the entries that are non-zero or inside a fixed support: positions + values."""
        keep = self.nonzero() if self.mask is None else self.mask.bool()
        positions = torch.nonzero(keep).reshape(-1)
        out = {
            "indices": self.index[positions].to(torch.int32).cpu(),
            "values": self.delta.detach()[positions].cpu(),
        }
        if self.mask is not None:  # the stored indices are exactly the fixed support
            out["fixed_support"] = torch.ones(1, dtype=torch.int8)
        return out

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        indices, values = tensors.get("indices"), tensors.get("values")
        if indices is None or values is None or indices.shape != values.shape or indices.dim() != 1:
            raise ValueError(f"{where}: expected 1-D 'indices' and 'values' of equal length")
        positions = self._positions(indices.long(), where)
        self.delta.zero_()
        self.delta[positions] = values.to(self.delta)
        if "fixed_support" in tensors:
            keep = torch.zeros_like(self.delta, dtype=torch.bool)
            keep[positions] = True
            self.set_mask(keep)
        else:
            self.clear_mask()

    def _positions(self, flat_indices: torch.Tensor, where: str) -> torch.Tensor:
        """Map parameter-flat indices to positions in ``delta``; error for indices outside the selection."""
        size = int(self.index.max()) + 1 if self.index.numel() else 0
        lookup = torch.full((max(size, 1),), -1, dtype=torch.long)
        lookup[self.index.cpu()] = torch.arange(self.index.numel())
        flat = flat_indices.cpu()
        if flat.numel() and (flat.min() < 0 or flat.max() >= size or (lookup[flat] < 0).any()):
            raise ValueError(f"{where}: stored indices fall outside the adapter's selected blocks")
        return lookup[flat].to(self.delta.device)
