"""RoSA-style sparse + low-rank in one adapter (Nikdan et al. 2024): on each matrix block the delta
is ``scale * A @ B`` (rank ``rank``, as :mod:`.lora`) plus a sparse per-entry delta whose support is
reached by the adapter's sparse ``mode`` at ``train.target_density`` (every option of
:class:`~.sparse.SparseConfig` applies to it), so the budget is split between ``rank`` and
``target_density``. Covered blocks: LoRA's (matrix blocks of the linear, skip, readout and radial
kinds). The delta is one sum, so merging stays exact; files store the sparse entries (as a sparse
adapter) and the factors (as LoRA)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from .._compat import torch
from ..ranges import ranged
from .lora import LORA_KINDS, load_lora_state, lora_delta, lora_factors, lora_state
from .sparse import SparseConfig, SparsePart


@dataclass(frozen=True)
class RoSAConfig(SparseConfig):
    """A sparse adapter (``mode``, ``l1``, ``allocation``, ...) plus a rank-``rank`` LoRA term
    (``scale``, ``seed`` as in LoRA) on the same blocks."""

    method = "rosa"
    default_lr = 1e-2
    rank: int = field(default=2, metadata=ranged(ge=1))
    scale: float = field(default=1.0, metadata=ranged(gt=0))
    seed: int = field(default=0, metadata=ranged(ge=0))

    @property
    def coverage(self) -> str:  # type: ignore[override]
        return f"rosa covers matrix blocks of kinds {', '.join(LORA_KINDS)} (use a sparse or freeze adapter for the others)"

    def applicable(self, block) -> bool:
        return block.kind in LORA_KINDS and block.matrix_shape is not None and super().applicable(block)

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in ROSA_MODES:
            raise ValueError(f"rosa.mode: {self.mode!r} is not one of {', '.join(ROSA_MODES)}")

    def make_part(self, blocks, dtype, device) -> "RoSAPart":
        sparse = super().make_part(blocks, dtype, device)  # the mode's part: its plain L1 strength
        seed = self.seed + (zlib.crc32(blocks[0].param.encode()) if blocks else 0)
        return RoSAPart(blocks, dtype, device, sparse.l1, self.mode, self.rank, self.scale, seed)


ROSA_MODES = ("two_phase", "gradual", "fisher")  # modes whose parts are plain sparse parts


class RoSAPart(SparsePart):
    """A sparse part plus A (rows x r) and B (r x cols) per block (B starts at zero: the delta
    starts at zero)."""

    def __init__(self, blocks, dtype, device, l1: float, mode: str, rank: int, scale: float, seed: int):
        super().__init__(blocks, dtype, device, l1, mode)
        self.scale = scale
        self.A, self.B = lora_factors(self.blocks, dtype, device, rank, seed)

    def low_rank(self) -> torch.Tensor:
        return lora_delta(self.A, self.B, self.scale)

    def sparse_values(self) -> torch.Tensor:
        return SparsePart.values(self)

    def values(self) -> torch.Tensor:
        return self.sparse_values() + self.low_rank()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {**super().state_tensors(), **lora_state(self.A, self.B)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        super().load_state_tensors(tensors, where)
        load_lora_state(self.A, self.B, self.blocks, tensors, where)
