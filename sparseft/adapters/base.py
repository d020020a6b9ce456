"""Shared pieces of every adapter: configs and the per-parameter delta parametrization.

An adapter owns, for each parameter it touches, a *part*: the flat indices of its
selected blocks in that parameter and a differentiable vector of delta values for
them. :class:`ParamDelta` is registered with ``torch.nn.utils.parametrize`` on the
parameter and computes ``W = W0 + sum(parts)``; ``forward`` of the model is never
rewritten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from .._compat import torch
from ..blocks import WeightBlock
from ..select import Selector


@dataclass(frozen=True)
class AdapterConfig:
    """Base config: a name (unique within a model) and a selector."""

    method: ClassVar[str] = ""
    name: str = ""
    select: Selector = field(default_factory=Selector)

    def to_dict(self) -> dict:
        out = {"method": self.method}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Selector) else value
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "adapter") -> "AdapterConfig":
        data = dict(data)
        data.pop("method", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown} for method {cls.method!r}; valid: {sorted(names)}")
        if "select" in data:
            data["select"] = Selector.from_dict(data["select"], f"{where}.select")
        return cls(**data)

    def describe(self) -> str:
        extras = {k: v for k, v in asdict(self).items() if k not in ("name", "select")}
        args = ", ".join(f"{k}={v}" for k, v in extras.items())
        return f"{self.method}({args}) on '{self.select}'"


class BlockPart(torch.nn.Module):
    """The delta of one adapter on one parameter: ``values()`` at flat ``index``."""

    def __init__(self, blocks: list[WeightBlock]):
        super().__init__()
        self.blocks = list(blocks)
        index = torch.cat([b.indices() for b in blocks]) if blocks else torch.zeros(0, dtype=torch.long)
        self.register_buffer("index", index, persistent=False)
        starts, acc = [], 0
        for b in blocks:
            starts.append(acc)
            acc += b.size
        self.starts = starts
        self._covers_all = None

    def covers_all(self, numel: int) -> bool:
        """Whether ``index`` is exactly ``0..numel-1`` in order (a whole parameter, row-major)."""
        if self._covers_all is None:
            n = self.index.numel()
            self._covers_all = n == numel and bool(torch.equal(self.index.cpu(), torch.arange(n)))
        return self._covers_all

    def block_slices(self):
        """(block, start, stop) of each block inside ``values()``."""
        return [(b, s, s + b.size) for b, s in zip(self.blocks, self.starts)]

    def values(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ParamDelta(torch.nn.Module):
    """Parametrization ``W0 -> W0 + delta`` with the delta assembled from adapter parts."""

    def __init__(self):
        super().__init__()
        self.parts = torch.nn.ModuleDict()

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        flat = original.reshape(-1)
        for part in self.parts.values():
            if part.covers_all(flat.numel()):
                flat = flat + part.values()  # a plain add is ~2x cheaper than index_add
            else:
                flat = flat.index_add(0, part.index, part.values())
        return flat.view(original.shape)
