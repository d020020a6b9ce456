"""The base step: the base model a recipe names, on its device, and the elements it adds."""

from __future__ import annotations

from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from ..data import read_frames
from ..loading import HeadNotFoundError, ModelLoadError, load_base_model
from ..recipe import Recipe, RecipeError
from .data import as_list, embedded_path


def device_name(name: str) -> str:
    from ..devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise RecipeError(f"base.device: {exc}") from exc


def load_base(recipe: Recipe, device: str | None = None):
    """The base model named by the recipe (``embedded`` -> the shipped mini-foundation), on
    ``device`` (default: the recipe's ``base.device``)."""
    head, modality = recipe.base.head, recipe.base.modality
    if head is not None and modality is not None and head != modality:
        raise RecipeError(f"base.modality: {modality!r} and base.head: {head!r} name two heads; give one")
    try:
        return load_base_model(
            recipe.base.model,
            dtype=recipe.base.dtype,
            device=device or device_name(recipe.base.device),
            head=modality if modality is not None else head,
        )
    except HeadNotFoundError as exc:
        raise HeadNotFoundError(f"base.head: {exc}") from exc
    except ModelLoadError as exc:
        raise ModelLoadError(f"base.model: {exc}") from exc


def added_elements(recipe: Recipe, base) -> list[int]:
    """Atomic numbers to add to the base: ``base.add_elements``, and with ``data.new_elements: add``
    every element of the data files that the base does not know."""
    zs = [int(z) for z in base.atomic_numbers]
    added = [SYMBOL_TO_Z[s] for s in recipe.base.add_elements]
    known = [s for s, z in zip(recipe.base.add_elements, added) if z in zs]
    if known:
        raise RecipeError(
            f"base.add_elements: {' '.join(known)} already in the base model ({' '.join(chemical_symbols[z] for z in zs)})"
        )
    if recipe.data.new_elements == "add":
        d = recipe.data
        paths = [p for name in ("train", "valid", "test") for p in as_list(getattr(d, name))]
        for path in paths + list(d.evaluate.values()):
            for atoms in read_frames(embedded_path(path)).atoms:
                added += [int(z) for z in set(atoms.numbers.tolist()) if z not in zs and z not in added]
    return sorted(added)
