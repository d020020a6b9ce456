"""Freeze-by-selection: only the selected blocks train, everything else stays frozen.

The change is stored as a delta over the selected entries, so files hold only the
selected blocks. ``FreezeConfig(select=Selector())`` is plain full fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._compat import torch
from .base import AdapterConfig, BlockPart


@dataclass(frozen=True)
class FreezeConfig(AdapterConfig):
    """Train the selected blocks in full."""

    method = "freeze"

    def make_part(self, blocks, dtype, device) -> "DensePart":
        return DensePart(blocks, dtype, device)


class DensePart(BlockPart):
    """One trainable delta entry per selected weight."""

    def __init__(self, blocks, dtype, device):
        super().__init__(blocks)
        self.delta = torch.nn.Parameter(torch.zeros(self.index.numel(), dtype=dtype, device=device))

    def values(self) -> torch.Tensor:
        return self.delta

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"values": self.delta.detach()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        values = tensors.get("values")
        if values is None or values.shape != self.delta.shape:
            raise ValueError(f"{where}: expected 'values' of shape {tuple(self.delta.shape)}")
        with torch.no_grad():
            self.delta.copy_(values.to(self.delta))
