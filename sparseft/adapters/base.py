"""The adapter protocol every method implements, and the per-parameter delta parametrization.

A method is a config class (:class:`AdapterConfig`: ``method`` name, ``applicable(block)``,
``make_part``) and a part class (:class:`BlockPart`). An adapter owns, for each parameter it
touches, a *part*: the flat indices of its selected blocks in that parameter and a
differentiable vector of delta values for them (``values()``), its file tensors
(``state_tensors()``/``load_state_tensors()``) and an ``after_step`` hook run after each
optimiser step. :class:`ParamDelta` is registered with ``torch.nn.utils.parametrize`` on the
parameter and computes ``W = W0 + sum(parts)``; ``forward`` of the model is never rewritten.
A part whose delta is one entry per selected weight and can be pruned to a fixed support
derives from :class:`PrunablePart`.
"""

from __future__ import annotations

import abc
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .._compat import torch
from ..blocks import WeightBlock
from ..ranges import as_number, check_field
from ..select import Selector


@dataclass(frozen=True)
class AdapterConfig(abc.ABC):
    """Base config: a name (unique within a model) and a selector."""

    method: ClassVar[str] = ""
    # the lr a recipe without ``train.lr`` gets: the smallest over its adapters (see default_lr)
    default_lr: ClassVar[float] = 1e-3
    coverage: ClassVar[str] = ""  # what ``applicable`` admits, for error messages ("" = every block)
    name: str = ""
    select: Selector = field(default_factory=Selector)

    def __post_init__(self):
        """Numbers must be finite and within the ranges their fields declare (``ranged``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{self.method}.{f.name}: expected a finite number, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                check_field(f, value, f"{self.method}.{f.name}")

    def to_dict(self) -> dict:
        out: dict = {"method": self.method}
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
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name not in data or f.name == "select":
                continue
            path = f"{where}.{f.name}"
            if hints[f.name] in (int, float):
                data[f.name] = as_number(data[f.name], hints[f.name], path)
                check_field(f, data[f.name], path)
            elif hints[f.name] is str and not isinstance(data[f.name], str):
                raise ValueError(f"{path}: expected a string, got {type(data[f.name]).__name__} ({data[f.name]!r})")
        if "select" in data:
            data["select"] = Selector.from_dict(data["select"], f"{where}.select")
        return cls(**data)

    def applicable(self, block: WeightBlock) -> bool:
        """Whether this method can adapt ``block`` (default: every block)."""
        return True

    @abc.abstractmethod
    def make_part(self, blocks: list[WeightBlock], dtype: torch.dtype, device: torch.device) -> "BlockPart":
        """The part of this adapter on one parameter (``blocks`` all belong to it)."""

    def describe(self) -> str:
        extras = {k: v for k, v in asdict(self).items() if k not in ("name", "select")}
        args = ", ".join(f"{k}={v}" for k, v in extras.items())
        return f"{self.method}({args}) on '{self.select}'"


class BlockPart(torch.nn.Module, abc.ABC):
    """The delta of one adapter on one parameter: ``values()`` at flat ``index``."""

    index: torch.Tensor

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
        self._covers_all: bool | None = None

    def covers_all(self, numel: int) -> bool:
        """Whether ``index`` is exactly ``0..numel-1`` in order (a whole parameter, row-major)."""
        if self._covers_all is None:
            n = self.index.numel()
            self._covers_all = n == numel and bool(torch.equal(self.index.cpu(), torch.arange(n)))
        return self._covers_all

    def block_slices(self):
        """(block, start, stop) of each block inside ``values()``."""
        return [(b, s, s + b.size) for b, s in zip(self.blocks, self.starts)]

    @abc.abstractmethod
    def values(self) -> torch.Tensor:
        """The delta of every selected entry, in ``index`` order (differentiable)."""

    @abc.abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors an adapter file stores for this part (CPU, detached)."""

    @abc.abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Inverse of :meth:`state_tensors`; a missing or misshapen tensor raises ``ValueError`` naming ``where``."""

    def after_step(self, lr: float, penalty_scale: float = 1.0) -> None:
        """Run after each optimiser step at learning rate ``lr`` (e.g. a proximal step of a
        penalty scaled by ``penalty_scale``, the L1 schedule); a no-op by default."""


class PrunablePart(BlockPart):
    """A part with one trainable ``delta`` entry per selected weight and an optional fixed
    support (``mask``): what :func:`sparseft.adapters.support.fix_support` prunes."""

    mask: torch.Tensor | None
    delta: torch.nn.Parameter

    @torch.no_grad()
    def set_mask(self, keep: torch.Tensor) -> None:
        """Fix the support to ``keep`` (bool vector); entries outside it become zero and stay zero."""
        self.mask = keep.to(self.delta.dtype)
        self.delta.mul_(self.mask)

    def clear_mask(self) -> None:
        self.mask = None


class ParamDelta(torch.nn.Module):
    """Parametrization ``W0 -> W0 + delta`` with the delta assembled from adapter parts."""

    def __init__(self):
        super().__init__()
        self.parts: Any = torch.nn.ModuleDict()  # adapter name -> BlockPart

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        flat = original.reshape(-1)
        for part in self.parts.values():
            if part.covers_all(flat.numel()):
                flat = flat + part.values()  # a plain add is ~2x cheaper than index_add
            else:
                flat = flat.index_add(0, part.index, part.values())
        return flat.view(original.shape)
