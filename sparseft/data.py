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
    energy: str = "REF_energy"
    forces: str = "REF_forces"
    stress: str = "REF_stress"
    virials: str = "REF_virials"


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


def attach_labels(frames: Frames, keys: Keys) -> Frames:
    """Copies of the frames whose labels sit under ``keys``, taking ASE calculator values where
    a key is missing; the originals (and the file) are left untouched."""
    out = []
    for atoms in frames.atoms:
        copy = atoms.copy()
        copy.calc = None
        for name, key, where in (("energy", keys.energy, "info"), ("stress", keys.stress, "info"),
                                 ("virials", keys.virials, "info"), ("forces", keys.forces, "arrays")):
            store = copy.info if where == "info" else copy.arrays
            if key not in store:
                value = _calc_value(atoms, "free_energy" if name == "energy" and _calc_value(atoms, "energy") is None else name)
                if value is not None:
                    store[key] = np.array(value) if where == "arrays" else value
        if keys.stress in copy.info:
            copy.info[keys.stress] = _full_stress(np.asarray(copy.info[keys.stress], dtype=float))
        elif keys.virials in copy.info and copy.pbc.all() and copy.cell.volume > 0:
            virials = _full_stress(np.asarray(copy.info[keys.virials], dtype=float))
            copy.info[keys.stress] = -virials / copy.cell.volume
        out.append(copy)
    return Frames(frames.path, out, frames.indices)


def _full_stress(stress: np.ndarray) -> np.ndarray:
    if stress.shape == (6,):
        xx, yy, zz, yz, xz, xy = stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return stress.reshape(3, 3) if stress.size == 9 else stress


def validate(frames: Frames, zs: list[int], keys: Keys) -> None:
    """Unknown elements (all listed, with frames) and NaN/inf positions, cells or labels."""
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
    for i, atoms in zip(frames.indices, frames.atoms):
        checks = [("positions", atoms.positions), ("cell", atoms.cell.array)]
        checks += [(k, atoms.info[k]) for k in (keys.energy, keys.stress, keys.virials) if k in atoms.info]
        checks += [(keys.forces, atoms.arrays[keys.forces])] if keys.forces in atoms.arrays else []
        for name, value in checks:
            try:
                array = np.asarray(value, dtype=float)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{frames.path}: frame {i}: {name} is not numeric ({value!r})") from exc
            if not np.all(np.isfinite(array)):
                raise DataError(f"{frames.path}: frame {i}: {name} contains NaN or inf")
        if keys.forces in atoms.arrays and np.asarray(atoms.arrays[keys.forces]).shape != (len(atoms), 3):
            raise DataError(f"{frames.path}: frame {i}: {keys.forces} has shape {np.shape(atoms.arrays[keys.forces])}, expected ({len(atoms)}, 3)")
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


def to_atomic_data(frames: Frames, model, keys: Keys, head: str | None = None) -> list:
    """mace ``AtomicData`` for each frame, with per-label weights (0 where a label is missing)."""
    from mace import data

    spec = data.KeySpecification(
        info_keys={"energy": keys.energy, "stress": keys.stress, "virials": keys.virials},
        arrays_keys={"forces": keys.forces},
    )
    return atomic_data(frames.atoms, model, key_specification=spec, head=head)


def loader(dataset: list, batch_size: int, *, shuffle: bool, seed: int = 0):
    """A mace DataLoader; shuffling is a pure function of ``seed`` (resumable runs)."""
    from mace.tools import torch_geometric

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch_geometric.dataloader.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=False, generator=generator
    )


def label_counts(frames: Frames, keys: Keys) -> dict[str, int]:
    """How many frames carry each label."""
    return {
        "energy": sum(keys.energy in a.info for a in frames.atoms),
        "forces": sum(keys.forces in a.arrays for a in frames.atoms),
        "stress": sum(keys.stress in a.info for a in frames.atoms),
        "virials": sum(keys.virials in a.info for a in frames.atoms),
    }
