"""LoRA: a rank-r delta ``scale * A @ B`` per matrix-shaped block.

Covered block kinds: every matrix block, i.e. each irreps-path block of an e3nn
``o3.Linear`` (embedding-free linears: ``linear_up``, ``linear``, ``product_linear``,
``readout``, ``skip`` when it is a linear), each (path, element) matrix of ``skip_tp``,
and the layers of the radial MLPs (``radial``, ``density``). A path block maps
``mul_in`` channels of one irrep to ``mul_out`` channels of the same irrep, so a
low-rank factorisation of it is itself an equivariant map.

Not covered, skipped when a selector includes them: vectors (biases, layer norms, the
per-element rows of the embedding) have no low-rank form, and symmetric-contraction
blocks (coupling paths x channels, often 1-4 rows) are already tiny per element; use a
sparse or freeze adapter for those. Blocks narrower than the rank get rank
``min(rank, rows, cols)``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

from .._compat import torch
from ..ranges import ranged
from .base import AdapterConfig, BlockPart

LORA_KINDS = ("linear_up", "linear", "skip", "product_linear", "readout", "radial", "density")


@dataclass(frozen=True)
class LoRAConfig(AdapterConfig):
    """``rank`` of each block's delta; ``scale`` multiplies ``A @ B``; ``seed`` for A's init."""

    method = "lora"
    default_lr = 1e-2  # as sparse: few weights move, so a higher rate than full fine-tuning's
    coverage = (
        f"LoRA covers matrix blocks of kinds {', '.join(LORA_KINDS)} (use a sparse or freeze adapter for the others)"
    )
    rank: int = field(default=4, metadata=ranged(ge=1))
    scale: float = field(default=1.0, metadata=ranged(gt=0))
    seed: int = field(default=0, metadata=ranged(ge=0))

    def applicable(self, block) -> bool:
        """A matrix block of a covered kind."""
        return block.kind in LORA_KINDS and block.matrix_shape is not None

    def make_part(self, blocks, dtype, device) -> "LoRAPart":
        seed = self.seed + (zlib.crc32(blocks[0].param.encode()) if blocks else 0)
        return LoRAPart(blocks, dtype, device, self.rank, self.scale, seed)


def lora_factors(blocks, dtype, device, rank: int, seed: int):
    """A (rows x r, random / sqrt(r)) and B (r x cols, zero) per matrix block, r = min(rank, rows, cols)."""
    generator = torch.Generator().manual_seed(seed)
    A, B = torch.nn.ParameterList(), torch.nn.ParameterList()
    for b in blocks:
        rows, cols = b.matrix_shape
        r = min(rank, rows, cols)
        a = torch.randn(rows, r, generator=generator, dtype=torch.float64) / math.sqrt(r)
        A.append(torch.nn.Parameter(a.to(dtype=dtype, device=device)))
        B.append(torch.nn.Parameter(torch.zeros(r, cols, dtype=dtype, device=device)))
    return A, B


def lora_delta(A, B, scale: float) -> torch.Tensor:
    """The flat delta ``scale * A @ B`` of every block, in block order."""
    return torch.cat([(a @ b).reshape(-1) for a, b in zip(A, B)]) * scale


def lora_state(A, B) -> dict[str, torch.Tensor]:
    """The factors as adapter-file tensors: ``"<i>.A"``, ``"<i>.B"`` per block."""
    out = {}
    for i, (a, b) in enumerate(zip(A, B)):
        out[f"{i}.A"] = a.detach().cpu()
        out[f"{i}.B"] = b.detach().cpu()
    return out


@torch.no_grad()
def load_lora_state(A, B, blocks, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy :func:`lora_state`'s tensors back into the factors; a missing or misshapen one is an
    error naming ``where`` and the block."""
    for i, (a, b) in enumerate(zip(A, B)):
        for key, p in ((f"{i}.A", a), (f"{i}.B", b)):
            t = tensors.get(key)
            if t is None or t.shape != p.shape:
                raise ValueError(f"{where}: expected '{key}' of shape {tuple(p.shape)} ({blocks[i].name})")
            p.copy_(t.to(p))


class LoRAPart(BlockPart):
    """A (rows x r) and B (r x cols) per block; B starts at zero so the delta starts at zero."""

    def __init__(self, blocks, dtype, device, rank: int, scale: float, seed: int):
        super().__init__(blocks)
        self.scale = scale
        self.A, self.B = lora_factors(blocks, dtype, device, rank, seed)

    def values(self) -> torch.Tensor:
        return lora_delta(self.A, self.B, self.scale)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return lora_state(self.A, self.B)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        load_lora_state(self.A, self.B, self.blocks, tensors, where)
