"""AdaptedModel: a MACE model whose selected weight blocks carry adapter deltas."""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import replace

from torch.nn.utils import parametrize

from ._compat import torch
from .adapters import METHODS, AdapterConfig, ParamDelta
from .adapters.lora import LoRAConfig, lora_applicable
from .adapters.sparse import SparsePart
from .blocks import blocks as catalogue
from .fingerprint import fingerprint
from .select import SelectionError


ADAPTABLE_BUFFERS = ("atomic_energies_fn.atomic_energies",)


class AdapterConflictError(ValueError):
    """Two adapters claim the same block."""


def _owner(model: torch.nn.Module, param: str):
    module_name, _, attr = param.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


class WrapsMaceModel(torch.nn.Module):
    """A module around a mace model (``self.model``) that shows the model-like attributes data
    and evaluation code read: element table, cutoff, mace head names."""

    @property
    def atomic_numbers(self):
        return self.model.atomic_numbers

    @property
    def r_max(self):
        return self.model.r_max

    @property
    def heads(self):
        return getattr(self.model, "heads", ["Default"])


class AdaptedModel(WrapsMaceModel):
    """A parametrized copy of a base model; only adapter parameters are trainable.

    Call it exactly like the base MACE model. ``merge()`` returns a plain model of the
    base's class with the deltas folded in.
    """

    def __init__(self, model: torch.nn.Module, configs: list[AdapterConfig], base_fingerprint: dict):
        super().__init__()
        self._plain = [copy.deepcopy(model)]  # an unparametrized copy (in a list: not a submodule) for merge()
        self.model = model
        self.configs = list(configs)
        self.base_fingerprint = base_fingerprint
        self.parts: dict[str, dict[str, torch.nn.Module]] = {}
        self._params: list[str] = []
        self.output_heads = torch.nn.ModuleDict()  # extra heads (sparseft.heads), trained in full
        self._irreps_list = None

    def forward(self, data, training: bool = False, compute_force: bool = True, compute_stress: bool = False,
                derivative_heads=None, **kwargs):
        """Like the base model; with heads, see :func:`sparseft.heads.forward_with_heads`
        (``derivative_heads`` only matters there)."""
        with parametrize.cached():
            if not self.output_heads:
                return self.model(data, training=training, compute_force=compute_force, compute_stress=compute_stress,
                                  **kwargs)
            from .heads import forward_with_heads

            return forward_with_heads(self.model, self.output_heads, self._irreps_list, data, training=training,
                                      compute_force=compute_force, compute_stress=compute_stress,
                                      derivative_heads=derivative_heads)

    # --- heads
    def add_head(self, head) -> None:
        """Attach a head (built on this model's base, see :func:`sparseft.heads.build_head`)."""
        from .heads import HeadError, feature_irreps

        if head.name in self.output_heads:
            raise HeadError(f"a head named {head.name!r} exists already")
        self._irreps_list = feature_irreps(self.model)
        self.output_heads[head.name] = head

    def head_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.output_heads.parameters() if p.requires_grad]

    # --- parameters
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The adapter parameters (the only ones with ``requires_grad``), then the heads' parameters."""
        out = []
        for parts in self.parts.values():
            for part in parts.values():
                out += [p for p in part.parameters() if p.requires_grad]
        return out + self.head_parameters()

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def all_parts(self):
        """(adapter name, parameter name, part) triples."""
        return [(a, p, part) for a, parts in self.parts.items() for p, part in parts.items()]

    # --- sparsity
    def sparse_parts(self) -> list[SparsePart]:
        return [part for _, _, part in self.all_parts() if isinstance(part, SparsePart)]

    def proximal_step(self, lr: float) -> None:
        """Soft-threshold every sparse delta (call after each optimiser step)."""
        for part in self.sparse_parts():
            part.proximal_step(lr)

    def l1_penalty(self) -> torch.Tensor:
        terms = [part.l1_penalty() for part in self.sparse_parts()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    @torch.no_grad()
    def fix_support(self, *, density: float | None = None, threshold: float | None = None,
                    curvature: dict | None = None) -> int:
        """Fix each sparse adapter's support: the top ``density`` fraction of its entries, or the
        entries with ``|delta| > threshold``. Returns entries kept.

        Entries are ranked by ``|delta|``, or, when ``curvature`` maps a part's delta parameter
        to a per-entry curvature estimate (e.g. Adam's ``exp_avg_sq``, a diagonal Fisher), by
        ``curvature * delta**2``: the loss increase expected from resetting that entry."""
        if (density is None) == (threshold is None):
            raise ValueError("fix_support needs exactly one of density= or threshold=")
        kept = 0
        by_adapter = defaultdict(list)
        for name, _, part in self.all_parts():
            if isinstance(part, SparsePart):
                by_adapter[name].append(part)
        for parts in by_adapter.values():
            if curvature is not None and density is not None:
                magnitudes = torch.cat([
                    (p.delta.detach() ** 2 * curvature.get(p.delta, torch.ones_like(p.delta))).reshape(-1)
                    for p in parts
                ])
            else:
                magnitudes = torch.cat([p.delta.detach().abs().reshape(-1) for p in parts])
            if density is not None:
                if not 0 < density <= 1:
                    raise ValueError(f"density must be in (0, 1], got {density}")
                k = max(1, int(round(density * magnitudes.numel())))
                cut = torch.topk(magnitudes, k).values[-1]
                keep_all = magnitudes >= cut
                if keep_all.sum() > k:  # ties: keep exactly k
                    order = torch.argsort(magnitudes, descending=True)[:k]
                    keep_all = torch.zeros_like(keep_all)
                    keep_all[order] = True
            else:
                keep_all = magnitudes > threshold
            start = 0
            for p in parts:
                n = p.delta.numel()
                p.set_mask(keep_all[start : start + n])
                start += n
            kept += int(keep_all.sum())
        return kept

    @torch.no_grad()
    def density(self) -> dict:
        """Fraction of selected entries that differ from the base: per block, per adapter, overall."""
        per_block, per_adapter = {}, {}
        total_nz = total = 0
        for adapter, _, part in self.all_parts():
            nz = part.values().detach() != 0
            for block, start, stop in part.block_slices():
                per_block[block.name] = float(nz[start:stop].float().mean()) if stop > start else 0.0
            a_nz, a_n = per_adapter.get(adapter, (0, 0))
            per_adapter[adapter] = (a_nz + int(nz.sum()), a_n + nz.numel())
            total_nz += int(nz.sum())
            total += nz.numel()
        return {
            "overall": total_nz / total if total else 0.0,
            "changed": total_nz,
            "selected": total,
            "adapters": {k: (v[0] / v[1] if v[1] else 0.0) for k, v in per_adapter.items()},
            "blocks": per_block,
        }

    # --- non-weight quantities a fine-tune may change (E0s)
    def changed_buffers(self) -> dict[str, torch.Tensor]:
        """Adaptable buffers (E0s) whose values differ from the base model's."""
        plain = dict(self._plain[0].named_buffers())
        current = dict(self.model.named_buffers())
        out = {}
        for name in ADAPTABLE_BUFFERS:
            if name in current and not torch.equal(current[name].detach().cpu().double(), plain[name].detach().cpu().double()):
                out[name] = current[name].detach()
        return out

    @torch.no_grad()
    def set_buffer(self, name: str, value: torch.Tensor) -> None:
        """Set an adaptable buffer (E0s) of the adapted model."""
        if name not in ADAPTABLE_BUFFERS:
            raise ValueError(f"{name!r} is not an adaptable buffer ({ADAPTABLE_BUFFERS})")
        buffer = dict(self.model.named_buffers())[name]
        if tuple(value.shape) != tuple(buffer.shape):
            raise ValueError(f"{name}: expected shape {tuple(buffer.shape)}, got {tuple(value.shape)}")
        buffer.copy_(value.to(buffer))

    # --- merging
    @torch.no_grad()
    def merge(self) -> torch.nn.Module:
        """A plain model of the base's class with every delta folded into its weights."""
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        merged = copy.deepcopy(self._plain[0]).to(device=device, dtype=dtype)
        with parametrize.cached():
            for param in self._params:
                module, attr = _owner(self.model, param)
                target, target_attr = _owner(merged, param)
                getattr(target, target_attr).copy_(getattr(module, attr))
        for name, value in self.changed_buffers().items():
            dict(merged.named_buffers())[name].copy_(value)
        for p in merged.parameters():
            p.requires_grad_(True)
        return merged

    def merge_with_heads(self) -> torch.nn.Module:
        """The merged model, wrapped with copies of the heads when there are any."""
        merged = self.merge()
        if not self.output_heads:
            return merged
        from .heads import HeadedModel

        return HeadedModel(merged, copy.deepcopy(self.output_heads))


def _assign_names(configs) -> list[AdapterConfig]:
    out, seen = [], set()
    for i, config in enumerate(configs):
        if not isinstance(config, AdapterConfig):
            raise TypeError(f"adapters[{i}] is a {type(config).__name__}, not an adapter config")
        name = config.name or f"{config.method}{i}"
        if name in seen:
            raise ValueError(f"two adapters are named {name!r}; adapter names must be unique")
        seen.add(name)
        out.append(replace(config, name=name))
    return out


def _resolve(config, all_blocks):
    chosen = config.select.resolve(all_blocks)
    if isinstance(config, LoRAConfig):
        explicit = set(config.select.kinds or ()) - {b.kind for b in chosen if lora_applicable(b)}
        chosen = [b for b in chosen if lora_applicable(b)]
        if not chosen or explicit:
            raise SelectionError(
                f"adapter {config.name!r}: LoRA covers matrix blocks of kinds linear_up, linear, skip, "
                f"product_linear, readout, radial, density; selector '{config.select}' "
                + (f"asks for kinds {sorted(explicit)} it cannot adapt" if explicit else "leaves none of them")
                + " (use a sparse or freeze adapter for those)"
            )
    return chosen


def wrap(model: torch.nn.Module, adapters, *, copy_model: bool = True, allow_empty: bool = False) -> AdaptedModel:
    """Attach adapters to (a copy of) ``model``; only the adapters' parameters train.

    ``adapters`` is a list of adapter configs (``SparseConfig``, ``LoRAConfig``,
    ``FreezeConfig``). Two adapters claiming one block raise :class:`AdapterConflictError`.
    ``allow_empty`` permits no adapters at all (a frozen trunk that only heads train on).
    """
    configs = _assign_names(list(adapters))
    if not configs and not allow_empty:
        raise ValueError("wrap() needs at least one adapter config")
    base_fp = fingerprint(model)
    target = copy.deepcopy(model) if copy_model else model
    all_blocks = catalogue(target)
    claims: dict[str, str] = {}
    plan = []
    for config in configs:
        chosen = _resolve(config, all_blocks)
        clashes = [b.name for b in chosen if b.name in claims]
        if clashes:
            raise AdapterConflictError(
                f"adapters {claims[clashes[0]]!r} and {config.name!r} both claim {len(clashes)} block(s), "
                f"e.g. {clashes[:3]}; give them disjoint selectors"
            )
        for b in chosen:
            claims[b.name] = config.name
        plan.append((config, chosen))

    for p in target.parameters():
        p.requires_grad_(False)
    adapted = AdaptedModel(target, configs, base_fp)
    deltas: dict[str, ParamDelta] = {}
    for config, chosen in plan:
        by_param = defaultdict(list)
        for b in chosen:
            by_param[b.param].append(b)
        make_part = METHODS[config.method][1]
        adapted.parts[config.name] = {}
        for param, param_blocks in by_param.items():
            module, attr = _owner(target, param)
            original = getattr(module, attr)
            part = make_part(config, param_blocks, original.dtype, original.device)
            part.index = part.index.to(original.device)
            if param not in deltas:
                deltas[param] = ParamDelta()
                parametrize.register_parametrization(module, attr, deltas[param], unsafe=True)
                getattr(module.parametrizations, attr).original.requires_grad_(False)
                adapted._params.append(param)
            deltas[param].parts[config.name] = part
            adapted.parts[config.name][param] = part
    return adapted
