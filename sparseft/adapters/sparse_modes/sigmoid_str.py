"""``str``: Cho et al.'s soft threshold reparametrisation (after Kusupati et al. 2020), faithfully.

``delta = sign(u) * relu(|u| - g)`` with one threshold per layer (per weight tensor)
``g = sigmoid(s) * threshold_scale``, ``s`` learned jointly with ``u`` (at ``threshold_lr_scale x``
the learning rate) and the only parameter with weight decay (``threshold_weight_decay``; it pulls
``s`` up, i.e. the thresholds up, against the loss). ``u`` is drawn from ``N(0, init_std**2)`` when
training starts (the wrapped model is still exactly the base), its gradient is the true one (zero
below the threshold). No target density, no schedule, no fixed support, no retrain phase: the
density is what the thresholds learn. Applied to e3nn Linear and tensor-product weights (kinds
``linear_up``, ``linear``, ``skip``, ``product_linear``, ``readout``, ``contraction``)."""

from __future__ import annotations

import zlib

from ..._compat import torch
from ..sparse import SparsePart
from .base import SparseMode

STR_KINDS = ("linear_up", "linear", "skip", "product_linear", "readout", "contraction")


class SigmoidSTR(SparseMode):
    name = "str"
    needs_target = False
    fixes_support = False
    coverage = f"sparse mode 'str' covers the Linear and tensor-product weights (kinds {', '.join(STR_KINDS)})"

    @classmethod
    def applicable(cls, block) -> bool:
        return block.kind in STR_KINDS

    @classmethod
    def make_part(cls, config, blocks, dtype, device) -> "STRPart":
        return STRPart(blocks, dtype, device, config.threshold_init, config.threshold_scale)

    def prepare(self, batches, forward_loss, frames: int, log=print, seed: int = 0) -> bool:
        for part in self.parts:
            if part.thresholding and not bool(part.delta.detach().ne(0).any()):  # a fresh part
                part.initialise(self.config.init_std, seed + zlib.crc32(part.blocks[0].param.encode()))
        return False

    def param_options(self) -> dict:
        out = {p.delta: {"weight_decay": 0.0} for p in self.parts}
        for p in self.parts:
            out[p.s] = {"lr_scale": self.config.threshold_lr_scale, "weight_decay": self.config.threshold_weight_decay}
        return out


class STRPart(SparsePart):
    """``values = sign(u) * relu(|u| - sigmoid(s) * scale)`` (``u`` the ``delta`` parameter, ``s`` one
    learnable scalar for the whole part); a loaded part holds its values exactly (no threshold)."""

    def __init__(self, blocks, dtype, device, threshold_init: float, scale: float):
        super().__init__(blocks, dtype, device, 0.0, "str")
        self.scale = scale
        self.s = torch.nn.Parameter(torch.full((), float(threshold_init), dtype=dtype, device=device))
        self.thresholding = True

    def threshold(self) -> torch.Tensor:
        return torch.sigmoid(self.s) * self.scale

    def values(self) -> torch.Tensor:
        if not self.thresholding or self.fixed:
            return super().values()
        u = self.delta
        return torch.sign(u) * torch.relu(u.abs() - self.threshold())

    @torch.no_grad()
    def initialise(self, std: float, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(self.delta.shape, generator=generator, dtype=torch.float64) * std
        self.delta.copy_(noise.to(self.delta))

    @torch.no_grad()
    def set_mask(self, keep: torch.Tensor) -> None:
        """Fix the support: the thresholded values become the delta."""
        if self.thresholding and not self.fixed:
            self.delta.copy_(self.values().detach())
        self.thresholding = False
        self.s.requires_grad_(False)
        super().set_mask(keep)

    @torch.no_grad()
    def load_state_tensors(self, tensors, where: str) -> None:
        self.thresholding = False  # the loaded values are the delta exactly (also through set_mask)
        self.s.requires_grad_(False)
        super().load_state_tensors(tensors, where)
