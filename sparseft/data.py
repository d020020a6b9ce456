"""Training data: extxyz/ASE frames -> validated, labelled graph items and batches.

ASE reads the files; the model's backend builds the graphs (mace's own data classes for MACE,
sevenn's neighbour list for SevenNet), :mod:`sparseft.core.graph` batches them. Labels are
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
from .core.graph import loader  # noqa: F401  (re-exported: data.loader)
from .geometry import StructureError, check_structure
from .labels import DataError, Keys, MagmomKeys  # noqa: F401  (re-exported)


@dataclass
class Frames:
    """Frames read from one file, with their origin for error messages."""

    path: str
    atoms: list
    indices: list[int]
    sources: list[str] | None = None  # each frame's file, when the frames come from several

    def names(self) -> list[str]:
        """``"<file>: frame <i>"`` for each frame, for messages."""
        files = self.sources or [self.path] * len(self.atoms)
        return [f"{f}: frame {i}" for f, i in zip(files, self.indices)]


def read_frames(path) -> Frames:
    """Read every frame of an extxyz (or any ASE-readable) file."""
    import ase.io

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: contains no frames (empty file)")
    atoms = []
    try:
        for frame in ase.io.iread(path, index=":"):  # frame by frame, so that an error can name its frame
            atoms.append(frame)
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        if atoms:
            raise DataError(f"{path}: frame {len(atoms)}: cannot read ({reason})") from exc
        raise DataError(f"{path}: cannot read as structures (frame 0: {reason})") from exc
    if not atoms:
        raise DataError(f"{path}: contains no frames")
    return Frames(str(path), atoms, list(range(len(atoms))))


def _pairs(extra) -> list:
    """``extra`` as (label set, use_calculator) pairs (a bare label set uses the calculator)."""
    return [item if isinstance(item, tuple) else (item, True) for item in extra]


def attach_labels(frames: Frames, keys: Keys, *, use_calculator: bool = True, extra=()) -> Frames:
    """Copies of the frames whose labels sit under ``keys`` (and each label set of ``extra``:
    ``(label set, use_calculator)`` pairs or bare label sets), taking ASE calculator values
    where a key is missing and ``use_calculator`` allows; the originals (and the file) are
    left untouched."""
    sets = [(keys, use_calculator)] + _pairs(extra)
    out = []
    for atoms in frames.atoms:
        copy = atoms.copy()
        copy.calc = None
        for label_set, use_calc in sets:
            label_set.attach(atoms, copy, use_calc)
        out.append(copy)
    return Frames(frames.path, out, frames.indices, frames.sources)


def validate(frames: Frames, zs: list[int], keys: Keys, extra=(), cutoff: float | None = None) -> None:
    """Unknown elements (all listed, with frames) and NaN/inf positions, cells or labels (of
    ``keys`` and of each label set in ``extra``), and label shapes; with ``cutoff`` (the model's),
    frames whose neighbour list would explode (:func:`sparseft.geometry.check_neighbours`)."""
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
        symbols = ", ".join(chemical_symbols[z] for z in sorted(unknown))
        raise DataError(
            f"{frames.path}: elements the base model does not know: {'; '.join(parts)}. The base model knows {base}; "
            f"to add them, set base.add_elements: [{symbols}] (or data.new_elements: add)"
        )
    sets = [keys] + [label_set for label_set, _ in _pairs(extra)]
    for i, atoms in zip(frames.indices, frames.atoms):
        where = f"{frames.path}: frame {i}"
        try:
            check_structure(atoms, cutoff=cutoff)
        except StructureError as exc:
            raise DataError(f"{where}: {exc}") from exc
        for label_set in sets:
            label_set.validate(atoms, where)


def split(frames: Frames, fraction: float, seed: int) -> tuple[Frames, Frames]:
    """Seeded random split into (rest, held-out ``fraction``)."""
    n = len(frames.atoms)
    n_out = int(round(fraction * n))
    if fraction > 0 and n_out == 0:
        n_out = 1
    if n_out >= n:
        raise DataError(f"{frames.path}: {n} frames are too few to hold out a fraction of {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    keep, out = sorted(order[n_out:]), sorted(order[:n_out])

    def pick(idx):
        sources = None if frames.sources is None else [frames.sources[i] for i in idx]
        return Frames(frames.path, [frames.atoms[i] for i in idx], [frames.indices[i] for i in idx], sources)

    return pick(keep), pick(out)


MISSING_KEY = "__sparseft_no_label__"  # a disabled label: a key no frame has


def to_atomic_data(
    frames: Frames, model, keys: Keys, head: str | None = None, heads=(), config_type_weights: dict | None = None
) -> list:
    """Graph items (the model backend's, see :func:`sparseft.predict.graphs`) for each frame, with
    per-label weights (0 where a label is missing); ``heads`` (``(name, label set)`` pairs) adds
    each extra head's labels as ``<name>__<quantity>`` with ``<name>__<quantity>_weight``."""
    from .predict import graphs

    items = graphs(frames.atoms, model, labels=keys, head=head, config_type_weights=config_type_weights)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    for k, (atoms, item) in enumerate(zip(frames.atoms, items)):
        item["source_frame"] = torch.tensor(
            [k]
        )  # position in ``frames``, for messages (a name with "index" would be offset when batched)
        for name, head_keys in heads:
            for key, value in head_keys.tensors(atoms, name, dtype).items():
                item[key] = value
    return items


def label_counts(frames: Frames, keys) -> dict[str, int]:
    """How many frames carry each label of ``keys`` (a label set)."""
    return keys.count(frames.atoms)
