"""Training data: extxyz/ASE frames -> validated, labelled mace ``AtomicData`` and batches.

ASE reads the files, mace-torch's own data classes build graphs and batches. Labels are
read from ``energy_key``/``forces_key``/``stress_key``/``virials_key`` (default
``REF_*``), falling back to the values of the frame's ASE calculator. A frame without a
label gets weight 0 for it (masked in the loss); virials of periodic frames without stress
become stress (``-virials / volume``). Input files are only ever read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ._compat import torch
from .predict import atomic_data


class DataError(ValueError):
    """Bad input data; the message names the file and frame."""


@dataclass(frozen=True)
class Keys:
    """Where an energy head's labels sit; ``None`` disables a label."""

    energy: str | None = "REF_energy"
    forces: str | None = "REF_forces"
    stress: str | None = "REF_stress"
    virials: str | None = "REF_virials"


@dataclass(frozen=True)
class MagmomKeys:
    """Where a magnetic-moment head's labels sit: per-atom ``magmoms`` (``arrays``; an ASE
    calculator's final ``magmoms`` otherwise; ``initial_magmoms`` names ASE's own array) and the
    structure's ``total`` moment (``info``; a calculator's ``magmom`` otherwise)."""

    magmoms: str = "REF_magmoms"
    total: str | None = "REF_total_magmom"
    vector: bool = False


@dataclass
class Frames:
    """Frames read from one file, with their origin for error messages."""

    path: str
    atoms: list
    indices: list[int]


def read_frames(path) -> Frames:
    """Read every frame of an extxyz (or any ASE-readable) file."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        atoms = ase.io.read(path, index=":")
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise DataError(f"{path}: cannot read as structures ({type(exc).__name__}: {exc})") from exc
    if not atoms:
        raise DataError(f"{path}: contains no frames")
    return Frames(str(path), atoms, list(range(len(atoms))))


def _calc_value(atoms, name):
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    return results.get(name)


def _attach_energy_labels(atoms, copy, keys: Keys, use_calculator: bool) -> None:
    for name, key, where in (("energy", keys.energy, "info"), ("stress", keys.stress, "info"),
                             ("virials", keys.virials, "info"), ("forces", keys.forces, "arrays")):
        store = copy.info if where == "info" else copy.arrays
        if key is not None and key not in store and use_calculator:
            value = _calc_value(atoms, "free_energy" if name == "energy" and _calc_value(atoms, "energy") is None else name)
            if value is not None:
                store[key] = np.array(value) if where == "arrays" else value
    if keys.stress is not None and keys.stress in copy.info:
        copy.info[keys.stress] = _full_stress(np.asarray(copy.info[keys.stress], dtype=float))
    elif (keys.stress is not None and keys.virials is not None and keys.virials in copy.info and copy.pbc.all()
          and copy.cell.volume > 0):
        virials = _full_stress(np.asarray(copy.info[keys.virials], dtype=float))
        copy.info[keys.stress] = -virials / copy.cell.volume


def _attach_magmom_labels(atoms, copy, keys: MagmomKeys) -> None:
    if keys.magmoms not in copy.arrays:
        value = _calc_value(atoms, "magmoms")
        if value is not None:
            copy.arrays[keys.magmoms] = np.array(value, dtype=float)
    if keys.total is not None and keys.total not in copy.info:
        value = _calc_value(atoms, "magmom")
        if value is not None:
            copy.info[keys.total] = float(value)


def attach_labels(frames: Frames, keys: Keys, *, use_calculator: bool = True, extra=()) -> Frames:
    """Copies of the frames whose labels sit under ``keys`` (and each ``(Keys, use_calculator)``
    or ``MagmomKeys`` in ``extra``), taking ASE calculator values where a key is missing and
    ``use_calculator`` allows; the originals (and the file) are left untouched."""
    out = []
    for atoms in frames.atoms:
        copy = atoms.copy()
        copy.calc = None
        _attach_energy_labels(atoms, copy, keys, use_calculator)
        for item in extra:
            if isinstance(item, MagmomKeys):
                _attach_magmom_labels(atoms, copy, item)
            else:
                _attach_energy_labels(atoms, copy, item[0], item[1])
        out.append(copy)
    return Frames(frames.path, out, frames.indices)


def _full_stress(stress: np.ndarray) -> np.ndarray:
    if stress.shape == (6,):
        xx, yy, zz, yz, xz, xy = stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return stress.reshape(3, 3) if stress.size == 9 else stress


def validate(frames: Frames, zs: list[int], keys: Keys, extra=()) -> None:
    """Unknown elements (all listed, with frames) and NaN/inf positions, cells or labels (of
    ``keys`` and of each ``Keys``/``MagmomKeys`` in ``extra``), and label shapes."""
    known = set(zs)
    unknown: dict[int, list[int]] = {}
    for i, atoms in zip(frames.indices, frames.atoms):
        for z in set(atoms.numbers.tolist()) - known:
            unknown.setdefault(z, []).append(i)
    if unknown:
        parts = []
        for z, idx in sorted(unknown.items()):
            shown = ", ".join(map(str, idx[:8])) + (" ..." if len(idx) > 8 else "")
            parts.append(f"{chemical_symbols[z]} (frames {shown})")
        base = " ".join(chemical_symbols[z] for z in sorted(known))
        raise DataError(f"{frames.path}: elements the base model does not know: {'; '.join(parts)}. The base model knows {base}")
    energy_keys = [keys] + [k for k in extra if isinstance(k, Keys)]
    magmom_keys = [k for k in extra if isinstance(k, MagmomKeys)]
    for i, atoms in zip(frames.indices, frames.atoms):
        checks = [("positions", atoms.positions), ("cell", atoms.cell.array)]
        for k in energy_keys:
            checks += [(key, atoms.info[key]) for key in (k.energy, k.stress, k.virials) if key is not None and key in atoms.info]
            checks += [(k.forces, atoms.arrays[k.forces])] if k.forces is not None and k.forces in atoms.arrays else []
            if k.forces is not None and k.forces in atoms.arrays and np.shape(atoms.arrays[k.forces]) != (len(atoms), 3):
                raise DataError(f"{frames.path}: frame {i}: {k.forces} has shape {np.shape(atoms.arrays[k.forces])}, "
                                f"expected ({len(atoms)}, 3)")
        for k in magmom_keys:
            if k.magmoms in atoms.arrays:
                shape, want = np.shape(atoms.arrays[k.magmoms]), ((len(atoms), 3) if k.vector else (len(atoms),))
                if shape != want:
                    kind = "vector (x, y, z) moments" if k.vector else "one collinear moment per atom"
                    raise DataError(f"{frames.path}: frame {i}: {k.magmoms} has shape {shape}, expected {want} ({kind})")
                checks.append((k.magmoms, atoms.arrays[k.magmoms]))
            if k.total is not None and k.total in atoms.info:
                checks.append((k.total, atoms.info[k.total]))
        for name, value in checks:
            try:
                array = np.asarray(value, dtype=float)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{frames.path}: frame {i}: {name} is not numeric ({value!r})") from exc
            if not np.all(np.isfinite(array)):
                raise DataError(f"{frames.path}: frame {i}: {name} contains NaN or inf")
        if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-6:
            raise DataError(f"{frames.path}: frame {i}: periodic but the cell has zero volume")


def split(frames: Frames, fraction: float, seed: int) -> tuple[Frames, Frames]:
    """Seeded random split into (rest, held-out ``fraction``)."""
    n = len(frames.atoms)
    n_out = int(round(fraction * n))
    if fraction > 0 and n_out == 0 and n > 1:
        n_out = 1
    if n_out >= n:
        raise DataError(f"{frames.path}: {n} frames are too few to hold out a fraction of {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    keep, out = sorted(order[n_out:]), sorted(order[:n_out])
    pick = lambda idx: Frames(frames.path, [frames.atoms[i] for i in idx], [frames.indices[i] for i in idx])  # noqa: E731
    return pick(keep), pick(out)


MISSING_KEY = "__sparseft_no_label__"  # a disabled label: a key no frame has


def to_atomic_data(frames: Frames, model, keys: Keys, head: str | None = None, heads=()) -> list:
    """mace ``AtomicData`` for each frame, with per-label weights (0 where a label is missing);
    ``heads`` (``(name, Keys | MagmomKeys)`` pairs) adds each extra head's labels as
    ``<name>__<quantity>`` with ``<name>__<quantity>_weight``."""
    from mace import data

    from .heads.labels import head_label_tensors

    pick = lambda key: MISSING_KEY if key is None else key  # noqa: E731
    spec = data.KeySpecification(
        info_keys={"energy": pick(keys.energy), "stress": pick(keys.stress), "virials": pick(keys.virials)},
        arrays_keys={"forces": pick(keys.forces)},
    )
    items = atomic_data(frames.atoms, model, key_specification=spec, head=head)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    for atoms, item in zip(frames.atoms, items):
        for name, head_keys in heads:
            for key, value in head_label_tensors(atoms, name, head_keys, dtype).items():
                item[key] = value
    return items


def loader(dataset: list, batch_size: int, *, shuffle: bool, seed: int = 0):
    """A mace DataLoader; shuffling is a pure function of ``seed`` (resumable runs)."""
    from mace.tools import torch_geometric

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch_geometric.dataloader.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=False, generator=generator
    )


def label_counts(frames: Frames, keys) -> dict[str, int]:
    """How many frames carry each label of ``keys`` (``Keys`` or ``MagmomKeys``)."""
    if isinstance(keys, MagmomKeys):
        return {
            "magmoms": sum(keys.magmoms in a.arrays for a in frames.atoms),
            "total": sum(keys.total is not None and keys.total in a.info for a in frames.atoms),
        }
    has = lambda key, store: key is not None and key in store  # noqa: E731
    return {
        "energy": sum(has(keys.energy, a.info) for a in frames.atoms),
        "forces": sum(has(keys.forces, a.arrays) for a in frames.atoms),
        "stress": sum(has(keys.stress, a.info) for a in frames.atoms),
        "virials": sum(has(keys.virials, a.info) for a in frames.atoms),
    }
