"""New elements: extend a MACE model's element table with elements it has never seen.

:func:`extend_elements` rebuilds the model with mace's own constructor for the larger table
and copies every weight across by block name (:mod:`sparseft.blocks` names per-element
blocks ``...Z=<z>]``), so it covers whatever is per-element in the model: node embedding
rows, per-element ``skip_tp`` matrices, symmetric-contraction weights, source/target
embeddings, E0s. The new element's blocks start from an initialisation:

- ``nearest`` (default): a copy of the base element closest in the periodic table (same
  group, nearest row; else nearest row, nearest group; ties: lower Z);
- ``mean``: the mean over the base's elements;
- ``random``: mace's own random initialisation (seeded);
- ``{new: source}``: a copy of a named base element.

e3nn normalises the embedding and ``skip_tp`` paths by the element count (``1/sqrt(n)``);
the rebuilt modules keep the base's constants, so a structure without the new elements gives
bit-identical predictions. The result is a plain model of the base's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from ._compat import default_dtype, o3, torch
from .blocks import blocks as catalogue
from .core.facts import e0s_buffer, e0s_name

INITS = ("nearest", "mean", "random")
_PERIOD_STARTS = (1, 3, 11, 19, 37, 55, 87, 119)


class ElementError(ValueError):
    """An element list or initialisation that cannot extend the model."""


@dataclass(frozen=True)
class ElementSpec:
    """Which elements were added and how they started; stored in adapter files."""

    added: tuple[int, ...]
    init: str | dict = "nearest"
    sources: dict = field(default_factory=dict)  # {new Z: [source Zs]} as chosen
    seed: int = 0

    def to_dict(self) -> dict:
        init = self.init if isinstance(self.init, str) else {str(k): int(v) for k, v in self.init.items()}
        return {
            "added": list(self.added),
            "init": init,
            "seed": self.seed,
            "sources": {str(k): list(v) for k, v in self.sources.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ElementSpec":
        init = data.get("init", "nearest")
        if isinstance(init, dict):
            init = {int(k): int(v) for k, v in init.items()}
        return cls(
            tuple(int(z) for z in data["added"]),
            init,
            {int(k): list(v) for k, v in data.get("sources", {}).items()},
            int(data.get("seed", 0)),
        )


def to_z(value, where: str = "add_elements") -> int:
    """Atomic number of a chemical symbol or number; anything else is an :class:`ElementError`."""
    if isinstance(value, bool):
        raise ElementError(f"{where}: {value!r} is not a chemical element")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        z = int(value)
        if 1 <= z < len(chemical_symbols):
            return z
    elif isinstance(value, str) and value in SYMBOL_TO_Z and SYMBOL_TO_Z[value] > 0:
        return SYMBOL_TO_Z[value]
    raise ElementError(f"{where}: {value!r} is not a chemical element (use a symbol such as N or an atomic number)")


def group_period(z: int) -> tuple[int, int]:
    """(group 1-18, period) of element ``z``; lanthanides and actinides count as group 3."""
    period = max(i for i, start in enumerate(_PERIOD_STARTS) if z >= start) + 1
    k = z - _PERIOD_STARTS[period - 1]
    if period == 1:
        return (1 if z == 1 else 18), 1
    if period <= 3:
        return (k + 1 if k < 2 else k + 11), period
    if period <= 5:
        return k + 1, period
    return (k + 1 if k < 2 else 3 if k < 17 else k - 13), period


def nearest_element(z: int, candidates: list[int]) -> int:
    """The candidate closest to ``z`` in the periodic table: same group and nearest row, else
    nearest row and nearest group; ties go to the lower Z."""
    g, p = group_period(z)

    def distance(c):
        gc, pc = group_period(c)
        return (0, abs(pc - p), 0, c) if gc == g else (1, abs(pc - p), abs(gc - g), c)

    return min(candidates, key=distance)


def _check_added(base_zs: list[int], add) -> list[int]:
    if isinstance(add, (str, int)):
        add = [add]
    zs = [to_z(v, f"add_elements[{i}]") for i, v in enumerate(add)]
    if not zs:
        raise ElementError("add_elements: give at least one element")
    present = [z for z in zs if z in base_zs]
    if present:
        raise ElementError(
            f"add_elements: {' '.join(chemical_symbols[z] for z in present)} already in the base model "
            f"({' '.join(chemical_symbols[z] for z in base_zs)})"
        )
    repeated = sorted({z for z in zs if zs.count(z) > 1})
    if repeated:
        raise ElementError(f"add_elements: listed twice: {' '.join(chemical_symbols[z] for z in repeated)}")
    return zs


def _sources(base_zs: list[int], added: list[int], init) -> dict[int, list[int]]:
    """{new Z: base Zs whose blocks it starts from} (empty list: random)."""
    if isinstance(init, dict):
        out = {}
        named = {to_z(k, "element_init"): to_z(v, f"element_init.{k}") for k, v in init.items()}
        for z, src in named.items():
            if z not in added:
                raise ElementError(
                    f"element_init: {chemical_symbols[z]} is not an added element "
                    f"({' '.join(chemical_symbols[a] for a in added)})"
                )
            if src not in base_zs:
                raise ElementError(
                    f"element_init.{chemical_symbols[z]}: {chemical_symbols[src]} is not in the base "
                    f"model ({' '.join(chemical_symbols[b] for b in base_zs)})"
                )
            out[z] = [src]
        return {z: out.get(z, [nearest_element(z, base_zs)]) for z in added}
    if init == "nearest":
        return {z: [nearest_element(z, base_zs)] for z in added}
    if init == "mean":
        return {z: list(base_zs) for z in added}
    if init == "random":
        return {z: [] for z in added}
    raise ElementError(f"element_init: {init!r} is not one of {', '.join(INITS)} or a {{new: source element}} map")


def _rebuild(model: torch.nn.Module, zs: list[int], e0s: torch.Tensor, seed: int) -> torch.nn.Module:
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        raise ElementError(f"cannot extend a {type(model).__name__}: {config['error']}")
    config.update(atomic_numbers=zs, num_elements=len(zs), atomic_energies=e0s.cpu().numpy())
    dtype = next(model.parameters()).dtype
    with torch.random.fork_rng(devices=[]), default_dtype(dtype):
        torch.manual_seed(seed)
        fresh = type(model)(**config)
    return fresh.to(next(model.parameters()).device)


def _extended_e0s(model, zs: list[int], sources: dict[int, list[int]]) -> torch.Tensor:
    old = e0s_buffer(model).detach()
    flat = old.reshape(-1, old.shape[-1])
    base_zs = [int(z) for z in model.atomic_numbers]
    cols = []
    for z in zs:
        src = [base_zs.index(s) for s in (sources.get(z) or base_zs)] if z not in base_zs else [base_zs.index(z)]
        cols.append(flat[:, src].mean(dim=1))
    return torch.stack(cols, dim=1).reshape(*old.shape[:-1], len(zs))


def _source_name(name: str, z: int, src: int) -> str:
    suffix = f"Z={z}]"
    if not name.endswith(suffix):
        raise ElementError(f"block {name!r} belongs to new element {chemical_symbols[z]} but its name has no {suffix}")
    return name[: -len(suffix)] + f"Z={src}]"


@torch.no_grad()
def _copy_weights(base, fresh, sources: dict[int, list[int]]) -> None:
    old_blocks = {b.name: b for b in catalogue(base)}
    old_params = {n: p.detach().reshape(-1) for n, p in base.named_parameters()}
    new_params = dict(fresh.named_parameters())
    for block in catalogue(fresh):
        flat = new_params[block.param].data.view(-1)
        if block.name in old_blocks:
            src = old_blocks[block.name]
            flat[block.indices()] = old_params[src.param][src.indices()]
        elif block.element in sources:
            if not sources[block.element]:
                continue  # random: keep mace's initialisation
            rows = [
                old_params[b.param][b.indices()]
                for b in (old_blocks[_source_name(block.name, block.element, s)] for s in sources[block.element])
            ]
            flat[block.indices()] = torch.stack(rows).mean(dim=0)
        else:
            raise ElementError(f"block {block.name!r} of the extended model has no counterpart in the base model")


@torch.no_grad()
def _copy_buffers(base, fresh) -> None:
    new = dict(fresh.named_buffers())
    for name, value in base.named_buffers():
        if name in ("atomic_numbers", e0s_name(base)) or name not in new:
            continue
        if new[name].shape != value.shape:
            raise ElementError(
                f"buffer {name!r} changes shape with the element table ({tuple(value.shape)} -> "
                f"{tuple(new[name].shape)}); sparseft does not know how to extend it"
            )
        new[name].copy_(value)


def _pin_normalisation(base, fresh) -> None:
    """Regenerate e3nn Linear / TensorProduct code whose path constants depend on the element
    count so that they use the base's constants (existing elements: bit-identical outputs)."""
    from e3nn.o3._linear import _codegen_linear
    from e3nn.o3._tensor_product._codegen import codegen_tensor_product_left_right, codegen_tensor_product_right

    old_modules = dict(base.named_modules())
    for name, mod in fresh.named_modules():
        old = old_modules.get(name)
        if not isinstance(mod, (o3.Linear, o3.TensorProduct)) or type(old) is not type(mod):
            continue
        weights = [i.path_weight for i in old.instructions]
        if [i.path_weight for i in mod.instructions] == weights:
            continue
        mod.instructions = [i._replace(path_weight=w) for i, w in zip(mod.instructions, weights)]
        if isinstance(mod, o3.Linear):
            if mod.weight.dim() != 1:
                raise ElementError(f"{name}: e3nn Linear with f_in/f_out is not supported")
            graph, _, _ = _codegen_linear(
                mod.irreps_in,
                mod.irreps_out,
                mod.instructions,
                None,
                None,
                shared_weights=mod.shared_weights,
                optimize_einsums=mod._optimize_einsums,
            )
            graphs = {"_compiled_main": graph}
        else:
            args = (
                mod.irreps_in1,
                mod.irreps_in2,
                mod.irreps_out,
                mod.instructions,
                mod.shared_weights,
                mod._specialized_code,
                mod._optimize_einsums,
            )
            graphs = {
                "_compiled_main_left_right": codegen_tensor_product_left_right(*args),
                "_compiled_main_right": codegen_tensor_product_right(*args),
            }
        mod.__codegen__ = [n for n in mod.__codegen__ if n not in graphs]
        mod._codegen_register(graphs)


def _pin_contraction_paths(base, fresh) -> None:
    """Give every symmetric contraction the base's einsum contraction order (opt_einsum chose it
    for the base's element count; another order sums in another order)."""
    import copy

    from mace.modules.symmetric_contraction import Contraction

    old_modules = dict(base.named_modules())
    for name, mod in fresh.named_modules():
        old = old_modules.get(name)
        if isinstance(mod, Contraction) and isinstance(old, Contraction):
            mod.graph_opt_main = copy.deepcopy(old.graph_opt_main)
            mod.contractions_weighting = copy.deepcopy(old.contractions_weighting)


def extend_elements(model: torch.nn.Module, add, *, init="nearest", seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` (same class) whose element table also holds ``add`` (symbols or Z).

    ``init``: ``nearest`` | ``mean`` | ``random`` | ``{new: source}`` (see the module doc).
    Elements that are not chemical elements, or already in the model, raise :class:`ElementError`.
    """
    base_zs = [int(z) for z in model.atomic_numbers]
    added = _check_added(base_zs, add)
    sources = _sources(base_zs, added, init)
    zs = sorted(base_zs + added)
    fresh = _rebuild(model, zs, _extended_e0s(model, zs, sources), seed)
    _copy_weights(model, fresh, sources)
    _copy_buffers(model, fresh)
    _pin_normalisation(model, fresh)
    _pin_contraction_paths(model, fresh)
    for p, q in zip(fresh.parameters(), model.parameters()):
        p.requires_grad_(q.requires_grad)
    fresh.train(model.training)
    return fresh


def spec_for(model: torch.nn.Module, add, *, init="nearest", seed: int = 0) -> ElementSpec:
    """The :class:`ElementSpec` that :func:`extend_elements` would apply (validated)."""
    base_zs = [int(z) for z in model.atomic_numbers]
    added = _check_added(base_zs, add)
    if isinstance(init, dict):
        init = {to_z(k, "element_init"): to_z(v, f"element_init.{k}") for k, v in init.items()}
    return ElementSpec(tuple(added), init, _sources(base_zs, added, init), seed)


def apply_spec(model: torch.nn.Module, spec: ElementSpec) -> torch.nn.Module:
    """``extend_elements`` as recorded in ``spec``."""
    return extend_elements(model, list(spec.added), init=spec.init, seed=spec.seed)


def element_adapter(spec: ElementSpec, name: str):
    """The adapter config that trains the added elements' blocks in full ("modules to save")."""
    from .adapters.freeze import FreezeConfig
    from .select import Selector

    return FreezeConfig(name=name, select=Selector(elements=spec.added))


def new_element_rows(model: torch.nn.Module, zs) -> dict[str, torch.Tensor]:
    """The values of every per-element block of elements ``zs`` (``{block name: values}``), and
    their E0s under ``E0s/<Z>``: what an adapter file stores of an extension."""
    params = {n: p.detach().reshape(-1) for n, p in model.named_parameters()}
    out = {b.name: params[b.param][b.indices()].clone() for b in catalogue(model) if b.element in set(zs)}
    table = [int(z) for z in model.atomic_numbers]
    e0 = e0s_buffer(model).detach()
    for z in zs:
        out[f"E0s/{z}"] = e0.reshape(-1, len(table))[:, table.index(z)].clone()
    return out


@torch.no_grad()
def set_new_element_rows(model: torch.nn.Module, rows: dict[str, torch.Tensor], where: str) -> None:
    """Inverse of :func:`new_element_rows` (errors name ``where`` and the block)."""
    params = dict(model.named_parameters())
    by_name = {b.name: b for b in catalogue(model)}
    table = [int(z) for z in model.atomic_numbers]
    e0 = e0s_buffer(model)
    for name, value in rows.items():
        if name.startswith("E0s/"):
            z = int(name[4:])
            e0.view(-1, len(table))[:, table.index(z)] = value.to(e0)
            continue
        block = by_name.get(name)
        if block is None or block.size != value.numel():
            raise ElementError(f"{where}: {name} does not match a per-element block of the extended model")
        params[block.param].data.view(-1)[block.indices()] = value.to(params[block.param])
