"""AdaptedModel: a base model whose selected weight blocks carry adapter deltas.

It knows the adapter protocol (:mod:`sparseft.adapters.base`) only: no method by name and no
heads (a model with heads is a :class:`sparseft.heads.HeadedModel` around this one).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from ase.data import chemical_symbols
from torch.nn.utils import parametrize

from ._compat import torch
from .adapters import AdapterConfig, BlockPart, ParamDelta, PrunablePart
from .adapters.support import fix_support
from .blocks import WeightBlock
from .blocks import blocks as catalogue
from .core.facts import WrapsModel, adaptable_buffers
from .elements import ElementSpec, apply_spec, element_adapter, spec_for
from .fingerprint import fingerprint
from .select import SelectionError

ELEMENT_ADAPTER = "new_elements"  # the adapter that trains added elements' blocks in full


class AdapterConflictError(ValueError):
    """Two adapters claim the same block."""


def _owner(model: torch.nn.Module, param: str):
    module_name, _, attr = param.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


class AdaptedModel(WrapsModel):
    """A parametrized copy of a base model; only adapter parameters are trainable.

    Call it exactly like the base model. ``merge()`` returns a plain model of the
    base's class with the deltas folded in; ``base`` is the unparametrized base.
    """

    def __init__(self, model: torch.nn.Module, configs: list[AdapterConfig], base_fingerprint: dict):
        super().__init__()
        self._plain = [copy.deepcopy(model)]  # an unparametrized copy (in a list: not a submodule) for merge()
        self.model = model
        self.configs = list(configs)
        self.base_fingerprint = base_fingerprint
        self.parts: dict[str, dict[str, BlockPart]] = {}
        self._params: list[str] = []
        self.elements = None  # sparseft.elements.ElementSpec when the element table was extended
        self.train_elements: tuple[int, ...] | None = (
            None  # per-element blocks of other elements carry no delta (None: all elements)
        )

    @property
    def base(self) -> torch.nn.Module:
        """The unparametrized base model (a copy taken before the adapters were attached)."""
        return self._plain[0]

    def forward(
        self, data: dict, training: bool = False, compute_force: bool = True, compute_stress: bool = False, **kwargs
    ) -> dict:
        """Exactly the base model's forward (``kwargs`` go to it), with each delta computed once."""
        with parametrize.cached():
            return self.model(
                data, training=training, compute_force=compute_force, compute_stress=compute_stress, **kwargs
            )

    # --- parameters
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The adapter parameters (the only ones with ``requires_grad``)."""
        return [p for _, _, part in self.all_parts() for p in part.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def all_parts(self) -> list[tuple[str, str, BlockPart]]:
        """(adapter name, parameter name, part) triples."""
        return [(a, p, part) for a, parts in self.parts.items() for p, part in parts.items()]

    # --- after each optimiser step, and support fixing
    def after_step(self, lr: float, penalty_scale: float = 1.0) -> None:
        """Every part's after-step hook (sparse: the proximal soft-threshold step; call after
        each optimiser step). ``penalty_scale`` scales the penalties (0: only re-apply masks)."""
        for _, _, part in self.all_parts():
            part.after_step(lr, penalty_scale)

    def proximal_step(self, lr: float) -> None:
        """:meth:`after_step` at full penalty (the name the README's training loop uses)."""
        self.after_step(lr)

    def prunable_parts(self) -> list[PrunablePart]:
        """Parts with a per-entry delta and an optional fixed support (masks), in part order."""
        return [part for _, _, part in self.all_parts() if isinstance(part, PrunablePart)]

    def fix_support(
        self,
        *,
        density: float | None = None,
        threshold: float | None = None,
        curvature: dict | None = None,
        allocation: str | None = None,
    ) -> int:
        """Fix each prunable adapter's support (see :func:`sparseft.adapters.support.fix_support`),
        ranked with ``allocation`` (default: each adapter's own ``allocation``, else ``global``);
        returns entries kept."""
        groups = defaultdict(list)
        for name, _, part in self.all_parts():
            if isinstance(part, PrunablePart) and getattr(part, "support", None) is None:  # compacted: fixed
                groups[name].append(part)
        configs = {c.name: c for c in self.configs}
        allocations = [allocation or getattr(configs.get(name), "allocation", "global") for name in groups]
        return fix_support(
            list(groups.values()), density=density, threshold=threshold, curvature=curvature, allocation=allocations
        )

    def compact_supports(self, supports: dict[int, torch.Tensor] | None = None) -> dict:
        """Compact prunable parts (:meth:`~sparseft.adapters.sparse.SparsePart.compact`): every
        part with a fixed mask, or, with ``supports`` (part number in :meth:`prunable_parts` ->
        support positions, e.g. from a checkpoint), those parts. Their parameters are new objects:
        returns ``{old parameter: (new parameter, positions kept)}`` (positions into the old
        parameter; ``None`` when the old one was compacted already)."""
        moved = {}
        for j, part in enumerate(self.prunable_parts()):
            compact = getattr(part, "compact", None)
            if compact is None:
                continue
            if supports is not None:
                if j not in supports:
                    continue
                keep = torch.zeros(part.index.numel(), dtype=torch.bool, device=part.delta.device)
                keep[supports[j].to(keep.device).long()] = True
            elif part.mask is not None:
                keep = part.mask.bool()
            else:
                continue
            old = part.delta
            compact(keep)
            moved[old] = (part.delta, part.support if old.numel() == part.index.numel() else None)
        return moved

    @torch.no_grad()
    def density(self) -> dict:
        """Fraction of selected entries that differ from the base: per block, per adapter, overall."""
        per_block: dict[str, float] = {}
        per_adapter: dict[str, tuple[int, int]] = {}
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
        plain = dict(self.base.named_buffers())
        current = dict(self.model.named_buffers())
        out = {}
        for name in adaptable_buffers(self.model):
            if name in current and not torch.equal(
                current[name].detach().cpu().double(), plain[name].detach().cpu().double()
            ):
                out[name] = current[name].detach()
        return out

    @torch.no_grad()
    def set_buffer(self, name: str, value: torch.Tensor) -> None:
        """Set an adaptable buffer (E0s) of the adapted model."""
        if name not in adaptable_buffers(self.model):
            raise ValueError(f"{name!r} is not an adaptable buffer ({adaptable_buffers(self.model)})")
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
        merged = copy.deepcopy(self.base).to(device=device, dtype=dtype)
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


def _check_elements(config: AdapterConfig, all_blocks: list[WeightBlock]) -> None:
    known = {b.element for b in all_blocks if b.element is not None}
    unknown = [z for z in config.select.elements or () if z not in known]
    if unknown:
        raise SelectionError(
            f"selector '{config.select}' names {' '.join(chemical_symbols[z] for z in unknown)}, "
            f"which the model neither has nor adds (elements: {' '.join(chemical_symbols[z] for z in sorted(known))}); "
            "add new elements with add_elements"
        )


def reachable(blocks: list[WeightBlock], elements) -> list[WeightBlock]:
    """The blocks a fine-tune on structures of ``elements`` can change: every shared block and
    the per-element blocks of those elements (the others receive no gradient). ``None``: all."""
    if elements is None:
        return list(blocks)
    keep = set(elements)
    return [b for b in blocks if b.element is None or b.element in keep]


def _resolve(config: AdapterConfig, all_blocks: list[WeightBlock], train_elements=None) -> list[WeightBlock]:
    """The blocks ``config`` selects and its method can adapt (of the ``train_elements``, when
    given); an error when a kind asked for by name has none it can adapt, or when nothing is left."""
    _check_elements(config, all_blocks)
    chosen = config.select.resolve(all_blocks)
    if train_elements is not None:
        kept = reachable(chosen, train_elements)
        if chosen and not kept:
            raise SelectionError(
                f"selector '{config.select}' selects only per-element blocks of elements absent from the training data"
            )
        chosen = kept
    usable = [b for b in chosen if config.applicable(b)]
    if len(usable) == len(chosen):
        return chosen
    explicit = set(config.select.kinds or ()) - {b.kind for b in usable}
    if not usable or explicit:
        raise SelectionError(
            f"adapter {config.name!r}: {config.coverage}; selector '{config.select}' "
            + (f"asks for kinds {sorted(explicit)} it cannot adapt" if explicit else "leaves none of them")
        )
    return usable


def wrap(
    model: torch.nn.Module,
    adapters: Iterable[AdapterConfig],
    *,
    copy_model: bool = True,
    allow_empty: bool = False,
    add_elements=None,
    element_init="nearest",
    train_elements=None,
) -> AdaptedModel:
    """Attach adapters to (a copy of) ``model``; only the adapters' parameters train.

    ``adapters`` is a list of adapter configs (``SparseConfig``, ``LoRAConfig``,
    ``FreezeConfig``). Two adapters claiming one block raise :class:`AdapterConflictError`.
    ``allow_empty`` permits no adapters at all (a frozen trunk that only heads train on).
    ``add_elements`` (symbols or Z, or an :class:`~sparseft.elements.ElementSpec`) extends the
    element table first (:func:`sparseft.elements.extend_elements` with ``element_init``): the
    new elements' blocks train in full (adapter ``new_elements``), the other adapters act on
    the rest, and the fingerprint stays the original base's. ``train_elements`` (atomic numbers:
    those of the training data) leaves out the per-element blocks of every other element, which
    training cannot reach: no delta, no optimiser state, and densities count only reachable
    weights (see :func:`reachable`).
    """
    base_fp = fingerprint(model)
    spec = None
    if add_elements:
        spec = (
            add_elements if isinstance(add_elements, ElementSpec) else spec_for(model, add_elements, init=element_init)
        )
        model, copy_model = apply_spec(model, spec), False
    return wrap_extended(
        model, adapters, base_fp, spec, copy_model=copy_model, allow_empty=allow_empty, train_elements=train_elements
    )


def _element_configs(configs: list[AdapterConfig], spec) -> list[AdapterConfig]:
    if spec is None:
        return configs
    if any(c.name == ELEMENT_ADAPTER for c in configs):
        raise ValueError(f"the adapter name {ELEMENT_ADAPTER!r} is reserved for the added elements' weights")
    return [element_adapter(spec, ELEMENT_ADAPTER), *configs]


def _claim(plan: list, claims: dict, config: AdapterConfig, chosen: list[WeightBlock], added: set, where: str) -> None:
    """Record the blocks ``config`` claims (``claims``: block name -> ``where`` of its adapter)."""
    if config.name != ELEMENT_ADAPTER:  # the added elements' blocks train in full, not through other adapters
        chosen = [b for b in chosen if b.element not in added]
        if not chosen:
            raise SelectionError(
                f"{where}: selector '{config.select}' leaves only blocks of the "
                f"added elements, which train in full (adapter {ELEMENT_ADAPTER!r})"
            )
    clashes = [b.name for b in chosen if b.name in claims]
    if clashes:
        raise AdapterConflictError(
            f"{where} and {claims[clashes[0]]} both claim {len(clashes)} block(s), e.g. {clashes[:3]}; "
            "give them disjoint selectors"
        )
    for b in chosen:
        claims[b.name] = where
    plan.append((config, chosen))


def wrap_extended(
    model: torch.nn.Module,
    adapters,
    base_fp: dict,
    spec,
    *,
    copy_model: bool = True,
    allow_empty: bool = False,
    train_elements=None,
) -> AdaptedModel:
    """:func:`wrap` on a model that is ``base_fp``'s base already extended by ``spec`` (or None)."""
    configs = _element_configs(_assign_names(list(adapters)), spec)
    if not configs and not allow_empty:
        raise ValueError("wrap() needs at least one adapter config")
    target = copy.deepcopy(model) if copy_model else model
    all_blocks = catalogue(target)
    added = set(spec.added) if spec is not None else set()
    claims: dict[str, str] = {}
    plan: list[tuple[AdapterConfig, list[WeightBlock]]] = []
    offset = 1 if spec is not None else 0  # the added elements' adapter comes first
    for i, config in enumerate(configs):
        where = f"adapters[{i - offset}] ({config.name!r})" if i >= offset else f"adapter {config.name!r}"
        try:
            chosen = _resolve(config, all_blocks, train_elements)
        except SelectionError as exc:
            raise SelectionError(f"{where}: {exc}") from exc
        _claim(plan, claims, config, chosen, added, where)

    for p in target.parameters():
        p.requires_grad_(False)
    adapted = AdaptedModel(target, configs, base_fp)
    adapted.elements = spec
    adapted.train_elements = None if train_elements is None else tuple(sorted({int(z) for z in train_elements}))
    deltas: dict[str, ParamDelta] = {}
    for config, chosen in plan:
        by_param = defaultdict(list)
        for b in chosen:
            by_param[b.param].append(b)
        adapted.parts[config.name] = {}
        for param, param_blocks in by_param.items():
            module, attr = _owner(target, param)
            original = getattr(module, attr)
            part = config.make_part(param_blocks, original.dtype, original.device)
            part.index = part.index.to(original.device)
            if param not in deltas:
                deltas[param] = ParamDelta()
                parametrize.register_parametrization(module, attr, deltas[param], unsafe=True)
                getattr(module.parametrizations, attr).original.requires_grad_(False)
                adapted._params.append(param)
            deltas[param].parts[config.name] = part
            adapted.parts[config.name][param] = part
    return adapted
