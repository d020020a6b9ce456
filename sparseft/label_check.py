"""The recipe's label keys checked against what a data file holds (issue 21).

A key the recipe set that no frame of a file carries (nor an ASE calculator value), while the
file does carry other labels of the same head, is a misspelling: an error listing the keys the
file has (a file with none of a head's labels is simply not that head's data, e.g. new data
for a new head next to replay data for the foundation). A default key (``REF_*``) may be
absent: the label is then not trained on, as in mace_run_train (a note says so when the
training data lacks its energies or forces). A per-atom array named where a per-frame value
belongs, or the reverse, is an error naming file, frame and key. Missing labels in *some*
frames stay allowed (weight 0). An evaluation set without any label is an error for
``valid`` (it selects the best epoch and stops early) and a warning for the others.
"""

from __future__ import annotations

from .labels import DataError

NOT_KEYS = {"numbers", "positions"}  # ASE's own arrays


def _store(atoms, where: str) -> dict:
    return atoms.info if where == "info" else atoms.arrays


def _shape(value) -> tuple:
    import numpy as np

    return np.shape(value)


def _file_keys(raw_atoms: list) -> str:
    """What the file holds: per-frame keys, per-atom arrays, ASE calculator values."""
    info = sorted({k for a in raw_atoms for k in a.info})
    arrays = sorted({k for a in raw_atoms for k in a.arrays} - NOT_KEYS)
    calc = sorted({k for a in raw_atoms for k in (getattr(a.calc, "results", None) or {})})
    show = lambda keys: ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "") if keys else "none"  # noqa: E731
    return f"the data has per-frame keys: {show(info)}; per-atom arrays: {show(arrays)}; ASE calculator values: {show(calc)}"


def check_placement(frames, label_sets: list) -> None:
    """Refuse a key naming a per-atom array where a per-frame value belongs (energy, stress,
    virials, total moment) or a per-frame value where a per-atom array belongs (forces, moments),
    for each ``(label set, recipe prefix)``."""
    for label_set, prefix in label_sets:
        _check_placement(frames, label_set, prefix)


def _check_placement(frames, label_set, prefix: str) -> None:
    for name, key, where in label_set.slots():
        if key is None:
            continue
        other = "arrays" if where == "info" else "info"
        for label, atoms in zip(frames.names(), frames.atoms):
            if key not in _store(atoms, where) and key in _store(atoms, other):
                shape = _shape(_store(atoms, other)[key])
                if where == "info":
                    raise DataError(
                        f"{label}: {prefix}{name} {key!r} names a per-atom array (shape {shape}), where a per-frame "
                        "value (a key=value in the comment line) belongs"
                    )
                raise DataError(
                    f"{label}: {prefix}{name} {key!r} names a per-frame value (shape {shape}, in the comment line), "
                    "where a per-atom array (a Properties column) belongs"
                )


def absent_keys(frames, label_set) -> list[tuple[str, str, bool]]:
    """``(recipe key name, key, is the default)`` of each key no frame carries. Stress and
    virials count only where some frame is periodic in all directions (molecules have none)."""
    defaults = dict((name, key) for name, key, _ in type(label_set)().slots())
    periodic = any(bool(a.pbc.all()) for a in frames.atoms)
    out = []
    for name, key, where in label_set.slots():
        if key is None or any(key in _store(a, where) for a in frames.atoms):
            continue
        if name in ("stress_key", "virials_key") and not periodic:
            continue
        out.append((name, key, key == defaults.get(name)))
    return out


def check_keys(raw_atoms: list, labelled, label_sets: list, *, train: bool = False) -> list[str]:
    """Refuse a key of a ``(label set, recipe prefix)`` that the recipe set and no frame of
    ``labelled`` (one file, or the files of one list) carries while another label of the set is
    there; ``raw_atoms`` (as read) give the keys the error lists. Returns notes for the log: with
    ``train``, a default energy or forces key that the frames lack while they have the other."""
    notes = []
    for label_set, prefix in label_sets:
        absent = absent_keys(labelled, label_set)
        if not any(label_set.count(labelled.atoms).values()):
            continue  # none of this head's labels: not its data (or the no-label errors say so)
        for name, key, default in absent:
            if not default:
                raise DataError(
                    f"{labelled.path}: {prefix}{name} {key!r} is in no frame (nor an ASE calculator value); "
                    f"{_file_keys(raw_atoms)}"
                )
        names = {name for name, _, _ in absent}
        if train and prefix == "data." and len(names & {"energy_key", "forces_key"}) == 1:
            key = dict((n, k) for n, k, _ in label_set.slots())
            label, other = ("an energy", "forces") if "energy_key" in names else ("forces", "energies")
            missing = key["energy_key" if "energy_key" in names else "forces_key"]
            notes.append(
                f"{labelled.path}: no frame has {label} ({missing}, nor an ASE calculator value): the foundation "
                f"head trains on its {other} alone, as mace_run_train would"
            )
    return notes


def has_labels(frames, label_sets: list) -> bool:
    """Whether any frame carries any label of any of the label sets."""
    return any(any(label_set.count(frames.atoms).values()) for label_set, _ in label_sets)


def wanted_keys(label_sets: list) -> str:
    """The keys of every label set, for messages."""
    return ", ".join(dict.fromkeys(key for s, _ in label_sets for _, key, _ in s.slots() if key is not None))


def check_evaluation_sets(splits: dict, label_sets: list, held_out: dict, log) -> None:
    """An evaluation set without labels: an error for ``valid``, a warning for the others
    (``held_out``: split name -> the file the split's frames were held out of)."""
    for name, frames in splits.items():
        if name == "train" or name.startswith("_") or frames is None or has_labels(frames, label_sets):
            continue
        keys = f"({wanted_keys(label_sets)}, nor ASE calculator values)"
        if name in held_out:
            where = f"data.{name}_fraction: the {len(frames.atoms)} frames held out of {held_out[name]} carry no label"
        else:
            where = f"data.{'evaluate.' if name not in ('valid', 'test') else ''}{name}: {frames.path}: no frame carries a label"
        if name == "valid":
            raise DataError(
                f"{where} {keys}: a validation set without labels cannot select the best epoch or stop early; "
                "label it, or use data.valid_fraction of labelled training frames"
            )
        log(f"WARNING: {where} {keys}: its metrics will be empty")
