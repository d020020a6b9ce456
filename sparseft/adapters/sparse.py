"""Sparse delta: most selected weights stay exactly at their pretrained value.

How the support is reached is the config's ``mode`` (the schedule is in :mod:`.sparse_modes`):
the default ``two_phase`` adds ``l1 * |delta|`` through a proximal (soft-threshold) step
after each optimiser step (:meth:`SparsePart.proximal_step`, the part's ``after_step``),
which sets small entries to exact zeros, then fixes the support (a mask) for retraining only
the surviving entries; ``str_scheduled`` parts (:class:`ThresholdPart`) and ``str`` parts
(:class:`~sparseft.adapters.sparse_modes.STRPart`) have learnable thresholds. A part
can be *compacted* to a fixed support (:meth:`SparsePart.compact`): its parameter then holds
only the support's values, so the optimiser keeps state for those alone. Files store only the
non-zero (or in-support) entries, sorted by their parameter-flat index: the gaps between
consecutive indices as uint16 (``index_gaps``, the first counted from -1) when every gap fits,
else the indices as int32 (``indices``), plus ``values``; a fixed support is flagged by
``fixed_support`` and equals the stored indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._compat import torch
from ..ranges import ranged
from .base import AdapterConfig, PrunablePart


@dataclass(frozen=True)
class SparseConfig(AdapterConfig):
    """``l1``: strength of the L1 penalty; the proximal step shrinks every entry by ``lr * l1``.

    With Adam each step moves an entry by about ``lr``, so ``l1`` is the fraction of that
    step an entry loses each time: 0.1-0.5 gives clear sparsity, 1 or more keeps only
    entries pushed the same way on almost every step. The scale does not depend on the loss,
    the gradients or the model: the same ``l1`` means the same in every recipe (``two_phase``
    mode only; the other modes reach the target density without it).

    ``mode``: how the support is reached (``two_phase``, ``gradual``, ``fisher``, ``str``,
    ``str_scheduled``; see :mod:`sparseft.adapters.sparse_modes`); ``gradual``, ``fisher`` and
    ``str_scheduled`` need ``train.target_density``. ``allocation``: how a support is ranked
    (:mod:`sparseft.adapters.ranking`): ``global`` (one top-k over the adapter) or ``per_block``
    (each weight block keeps its share, at least one entry). ``proximal`` (``two_phase``): the
    L1 step ``plain`` (every entry loses ``lr * l1``) or ``adam`` (preconditioned by Adam's second
    moment: an entry loses ``lr * l1 * mean(sqrt(v)) / sqrt(v_i)``, so entries whose gradient is
    small for its noise shrink faster). ``search_lr_scale`` (``two_phase``): the learning rate of the
    search (L1) phase relative to ``train.lr``. ``fisher_frames``: structures whose squared
    gradients rank the entries in ``fisher`` mode. ``threshold_lr_scale``: learning rate of the
    learnable thresholds (``str``, ``str_scheduled``) relative to ``train.lr``.
    ``threshold_init``, ``threshold_scale``, ``threshold_weight_decay``, ``init_std`` (``str``):
    thresholds ``g = sigmoid(s) * threshold_scale`` with ``s`` starting at ``threshold_init``, weight
    decay on ``s`` only, the delta drawn from ``N(0, init_std**2)`` when training starts.
    """

    method = "sparse"
    default_lr = 1e-2  # chosen on validation in every converged benchmark set (benchmarks/results/converged.md)
    l1: float = field(default=0.1, metadata=ranged(ge=0))
    mode: str = "two_phase"
    allocation: str = "global"
    proximal: str = "plain"
    search_lr_scale: float = field(default=1.0, metadata=ranged(gt=0))
    fisher_frames: int = field(default=256, metadata=ranged(ge=1))
    threshold_lr_scale: float = field(default=10.0, metadata=ranged(gt=0))
    threshold_init: float = field(default=-12.0, metadata=ranged())  # a logit: any finite number
    threshold_scale: float = field(default=1.0, metadata=ranged(gt=0))
    threshold_weight_decay: float = field(default=1e-4, metadata=ranged(ge=0))
    init_std: float = field(default=1e-4, metadata=ranged(ge=0))

    def __post_init__(self):
        super().__post_init__()
        from .ranking import check_allocation

        if self.mode not in MODES:
            raise ValueError(f"sparse.mode: {self.mode!r} is not one of {', '.join(MODES)}")
        check_allocation(self.allocation, "sparse.allocation")
        if self.proximal not in PROXIMAL:
            raise ValueError(f"sparse.proximal: {self.proximal!r} is not one of {', '.join(PROXIMAL)}")

    @property
    def coverage(self) -> str:  # type: ignore[override]
        return MODES[self.mode].coverage

    def applicable(self, block) -> bool:
        return MODES[self.mode].applicable(block)

    def make_part(self, blocks, dtype, device) -> "SparsePart":
        return MODES[self.mode].make_part(self, blocks, dtype, device)


PROXIMAL = ("plain", "adam")  # two_phase's L1 step
# mode name -> strategy class: filled by :mod:`.sparse_modes` (imported by the package), whose
# modes build the parts defined here
MODES: dict = {}


class SparsePart(PrunablePart):
    """A delta entry per selected weight, kept sparse by proximal steps or a fixed mask."""

    def __init__(self, blocks, dtype, device, l1: float, mode: str = "two_phase"):
        super().__init__(blocks)
        self.l1 = l1  # the plain proximal step of after_step (0: none; the mode may shrink itself)
        self.mode = mode
        self.delta = torch.nn.Parameter(torch.zeros(self.index.numel(), dtype=dtype, device=device))
        self.register_buffer("mask", None, persistent=False)
        self.register_buffer("support", None, persistent=False)  # positions of a compacted part

    def values(self) -> torch.Tensor:
        if self.support is not None:
            full = torch.zeros(self.index.numel(), dtype=self.delta.dtype, device=self.delta.device)
            return full.index_put((self.support,), self.delta)
        return self.delta if self.mask is None else self.delta * self.mask

    def sparse_values(self) -> torch.Tensor:
        """The per-entry (sparse) delta alone, what files store and supports are cut from: ``values``,
        unless a subclass adds a dense term (``rosa``'s low-rank part)."""
        return self.values()

    @property
    def fixed(self) -> bool:
        """Whether the support is fixed (a mask or a compacted part)."""
        return self.mask is not None or self.support is not None

    @torch.no_grad()
    def compact(self, keep: torch.Tensor) -> None:
        """Fix the support to ``keep`` and hold only its values as the parameter (a new
        ``torch.nn.Parameter``: build the optimiser afterwards)."""
        positions = torch.nonzero(keep.to(self.delta.device)).reshape(-1)
        values = self.sparse_values().detach()[positions].clone()
        self.mask = None
        self.support = positions
        self.delta = torch.nn.Parameter(values)

    @torch.no_grad()
    def proximal_step(self, lr: float, l1: float | None = None) -> None:
        """Soft-threshold: ``delta <- sign(delta) * max(|delta| - lr*l1, 0)``; re-applies the mask."""
        if self.support is not None:
            return
        threshold = lr * (self.l1 if l1 is None else l1)
        if threshold > 0 and self.mask is None:
            self.delta.copy_(torch.nn.functional.softshrink(self.delta, threshold))
        if self.mask is not None:
            self.delta.mul_(self.mask)

    def after_step(self, lr: float, penalty_scale: float = 1.0) -> None:
        """The plain proximal step of ``penalty_scale * l1`` (``l1`` is 0 in parts whose mode does
        not shrink this way: then only a fixed mask is re-applied)."""
        self.proximal_step(lr, self.l1 * penalty_scale)

    @torch.no_grad()
    def shrink(self, thresholds: torch.Tensor) -> None:
        """Soft-threshold by per-entry ``thresholds`` (a preconditioned proximal step)."""
        if self.support is None and self.mask is None:
            self.delta.copy_(torch.sign(self.delta) * torch.relu(self.delta.abs() - thresholds))

    def nonzero(self) -> torch.Tensor:
        """Bool vector: which entries differ from the pretrained weight."""
        return self.sparse_values().detach() != 0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Only the entries that are non-zero or inside a fixed support: positions + values."""
        if self.support is not None:
            keep = torch.zeros(self.index.numel(), dtype=torch.bool, device=self.delta.device)
            keep[self.support] = True
        else:
            keep = self.nonzero() if self.mask is None else self.mask.bool()
        positions = torch.nonzero(keep).reshape(-1)
        flat, order = torch.sort(self.index[positions].cpu())
        values = self.sparse_values().detach()[positions[order.to(positions.device)]].cpu()
        out = {**_encode_indices(flat), "values": values}
        if self.fixed:  # the stored indices are exactly the fixed support
            out["fixed_support"] = torch.ones(1, dtype=torch.int8)
        return out

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        indices, values = _decode_indices(tensors), tensors.get("values")
        if indices is None or values is None or indices.shape != values.shape or indices.dim() != 1:
            raise ValueError(f"{where}: expected 1-D 'indices' (or 'index_gaps') and 'values' of equal length")
        positions = self._positions(indices.long(), where)
        self._expand()
        self.delta.zero_()
        self.delta[positions] = values.to(self.delta)
        if "fixed_support" in tensors:
            keep = torch.zeros_like(self.delta, dtype=torch.bool)
            keep[positions] = True
            self.set_mask(keep)
        else:
            self.clear_mask()

    def _expand(self) -> None:
        """Undo :meth:`compact` (a full-size parameter again), e.g. before loading a file."""
        if self.support is not None:
            self.delta = torch.nn.Parameter(self.sparse_values().detach().clone())
            self.support = None

    def _positions(self, flat_indices: torch.Tensor, where: str) -> torch.Tensor:
        """Map parameter-flat indices to positions in ``delta``; error for indices outside the selection."""
        size = int(self.index.max()) + 1 if self.index.numel() else 0
        lookup = torch.full((max(size, 1),), -1, dtype=torch.long)
        lookup[self.index.cpu()] = torch.arange(self.index.numel())
        flat = flat_indices.cpu()
        if flat.numel() and (flat.min() < 0 or flat.max() >= size or (lookup[flat] < 0).any()):
            raise ValueError(f"{where}: stored indices fall outside the adapter's selected blocks")
        return lookup[flat].to(self.delta.device)


class ThresholdPart(SparsePart):
    """``str_scheduled`` mode: ``delta = sign(u) * relu(|u| - exp(s_block + offset))`` until the support is
    fixed (``u`` is the ``delta`` parameter; ``s`` one learnable log-threshold per block; the
    global ``offset`` is set by :func:`sparseft.adapters.sparse_modes.str_scheduled.set_offsets`)."""

    def __init__(self, blocks, dtype, device, l1: float, mode: str = "str_scheduled"):
        super().__init__(blocks, dtype, device, l1, mode)
        self.s = torch.nn.Parameter(torch.zeros(len(self.blocks), dtype=dtype, device=device))
        sizes = torch.tensor([b.size for b in self.blocks], dtype=torch.long)
        block_of = torch.repeat_interleave(torch.arange(len(self.blocks)), sizes).to(device)
        self.register_buffer("block_of", block_of, persistent=False)
        self.register_buffer("offset", torch.tensor(-math.inf, dtype=dtype, device=device), persistent=False)

    def thresholds(self) -> torch.Tensor:
        """Per-entry threshold ``g``."""
        return torch.exp(self.s[self.block_of] + self.offset)

    def values(self) -> torch.Tensor:
        if self.fixed:
            return super().values()
        u = self.delta
        shrunk = u.abs() - self.thresholds()
        active = shrunk > 0
        hard = torch.sign(u) * torch.relu(shrunk)
        return hard + (u - u.detach()) * (~active).to(u.dtype)  # straight-through below the threshold

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """``log|u| - s_block``: an entry is active when its score exceeds ``offset``."""
        return torch.log(self.delta.abs()) - self.s[self.block_of]

    @torch.no_grad()
    def proximal_step(self, lr: float, l1: float | None = None) -> None:
        if self.fixed:
            super().proximal_step(lr, 0.0)

    @torch.no_grad()
    def set_mask(self, keep: torch.Tensor) -> None:
        """Fix the support: the thresholded values become the delta."""
        if not self.fixed:
            self.delta.copy_(self.values().detach())
        super().set_mask(keep)

    @torch.no_grad()
    def compact(self, keep: torch.Tensor) -> None:
        """:meth:`SparsePart.compact`; the thresholds no longer act (the support is fixed), so
        they stop training (a parameter without gradient would stall DDP)."""
        super().compact(keep)
        self.s.requires_grad_(False)

    @torch.no_grad()
    def load_state_tensors(self, tensors, where: str) -> None:
        super().load_state_tensors(tensors, where)
        self.offset.fill_(-math.inf)  # no threshold: the loaded values are the delta exactly


def _encode_indices(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sorted flat indices as uint16 gaps (6 bytes per float32 entry instead of 8) when they fit."""
    gaps = torch.diff(flat, prepend=torch.tensor([-1], dtype=flat.dtype))
    if gaps.numel() and int(gaps.max()) <= 65535:
        return {"index_gaps": gaps.to(torch.int32).to(torch.uint16)}
    return {"indices": flat.to(torch.int32)}


def _decode_indices(tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
    if "index_gaps" in tensors:
        gaps = tensors["index_gaps"]
        return torch.cumsum(gaps.to(torch.int64), 0) - 1 if gaps.dim() == 1 else gaps
    return tensors.get("indices")
