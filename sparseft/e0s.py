"""Isolated-atom energies (E0s) for fine-tuning: keep, average, estimate, or set explicitly
(a map, or a JSON file of ``{Z or element: eV}`` as mace_run_train's ``--E0s`` accepts).

E0s live in the base model's E0s buffer (its backend's ``e0s_buffer``); they are not an
adapter weight, so a fine-tune that changes them stores them in the adapter files too.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from ._compat import torch
from .core.facts import e0s_values, write_e0s
from .data import DataError, Frames, Keys
from .predict import predict


def _composition(frames: Frames, zs: list[int]) -> np.ndarray:
    return np.array([[np.count_nonzero(a.numbers == z) for z in zs] for a in frames.atoms], float)


def _energies(frames: Frames, keys: Keys) -> tuple[np.ndarray, np.ndarray]:
    has = np.array([keys.energy in a.info for a in frames.atoms])
    values = np.array([float(a.info[keys.energy]) if h else np.nan for a, h in zip(frames.atoms, has)])
    return values, has


def current_e0s(model) -> dict[int, float]:
    """The model's E0s (first head) as {Z: eV}."""
    values = e0s_values(model).detach().cpu().double()
    return {int(z): float(v) for z, v in zip(model.atomic_numbers, values)}


def _lstsq(
    A: np.ndarray, b: np.ndarray, zs: list[int], present: np.ndarray, fallback: dict[int, float], *, what: str, log
) -> dict[int, float]:
    """Least squares on the elements present; absent elements keep ``fallback``. Compositions
    that cannot separate the elements (rank-deficient) get the minimum-norm solution, and
    ``log`` says so."""
    cols = np.where(present)[0]
    solution, _, rank, _ = np.linalg.lstsq(A[:, cols], b, rcond=None)
    if rank < len(cols):
        formulas = sorted(
            {" ".join(f"{chemical_symbols[zs[c]]}{int(n)}" for c, n in zip(cols, row) if n) for row in A[:, cols]}
        )
        shown = "; ".join(formulas[:3]) + (" ..." if len(formulas) > 3 else "")
        log(
            f"note: data.E0s: {what}: the training compositions ({shown}) cannot separate the "
            f"{len(cols)} elements (rank {rank}); took the least-squares solution of smallest norm"
            + (" (the smallest change to the base's E0s)" if what == "estimated" else "")
            + ": only the E0s' combination in these compositions is determined"
        )
    out = dict(fallback)
    for c, value in zip(cols, solution):
        out[zs[c]] = float(value)
    return out


def resolve_e0s(
    option, model, frames: Frames, keys: Keys, head: str | None = None, new=(), log=None
) -> dict[int, float]:
    """E0s per the recipe option ``foundation | average | estimated | {element: eV} | file.json``
    (``log`` hears what a rank-deficient fit did).

    ``new``: elements added to the base (:mod:`sparseft.elements`); with ``foundation`` or an
    explicit map that leaves them out, their E0s are fitted to the training energies (a
    least-squares correction of the model's prediction on those elements only)."""
    log = log or (lambda _msg: None)
    if isinstance(option, str) and option.endswith(".json"):
        option = read_e0s_file(option)
    out = _resolve(option, model, frames, keys, head, log)
    missing = [z for z in new if option == "foundation" or (isinstance(option, dict) and not _named(option, z))]
    if missing:
        out.update(_estimate_new(model, frames, keys, head, missing, out, log))
    return out


def _named(option: dict, z: int) -> bool:
    return any((SYMBOL_TO_Z.get(k) if isinstance(k, str) and not k.isdigit() else int(k)) == z for k in option)


def _estimate_new(model, frames, keys, head, new: list[int], e0s: dict[int, float], log) -> dict[int, float]:
    """E0s of the added elements ``new`` that best fit the training energies, the rest fixed."""
    energies, has = _energies(frames, keys)
    zs = [int(z) for z in model.atomic_numbers]
    A = _composition(frames, zs)[has]
    present = np.array([z in new for z in zs]) & (A.sum(axis=0) > 0)
    if has.sum() == 0 or not present.any():
        return {}
    subset = [a for a, h in zip(frames.atoms, has) if h]
    current = current_e0s(model)
    shift = A @ np.array([e0s[z] - current[z] for z in zs])  # the prediction with the E0s chosen so far
    energies_only = predict(model, subset, head=head, forces=False, stress=False)
    predicted = np.array([p.energy for p in energies_only]) + shift
    correction = _lstsq(A, energies[has] - predicted, zs, present, {z: 0.0 for z in zs}, what="estimated", log=log)
    return {z: e0s[z] + correction[z] for z in new if present[zs.index(z)]}


def read_e0s_file(path) -> dict:
    """``{Z or element: eV}`` from a JSON file (mace_run_train's ``--E0s file.json``)."""
    import json
    from pathlib import Path

    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(f"data.E0s: {path}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"data.E0s: {path}: not a JSON file of {{element: eV}} ({exc})") from exc
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise DataError(f"data.E0s: {path}: expected a JSON object {{Z or element: eV}}")
    return values


def _resolve(option, model, frames: Frames, keys: Keys, head: str | None, log) -> dict[int, float]:
    zs = [int(z) for z in model.atomic_numbers]
    base = current_e0s(model)
    if option == "foundation":
        return base
    if isinstance(option, dict):
        out = dict(base)
        for key, value in option.items():
            z = SYMBOL_TO_Z.get(key) if isinstance(key, str) and not key.isdigit() else int(key)
            if z is None or z not in zs:
                raise DataError(
                    f"data.E0s: element {key!r} is not in the base model ({' '.join(chemical_symbols[x] for x in zs)})"
                )
            out[z] = float(value)
        return out
    energies, has = _energies(frames, keys)
    if has.sum() == 0:
        raise DataError(f"data.E0s: {option!r} needs energy labels ({keys.energy}) in the training data; none found")
    A = _composition(frames, zs)[has]
    present = A.sum(axis=0) > 0
    if option == "average":
        return _lstsq(A, energies[has], zs, present, base, what="average", log=log)
    if option == "estimated":
        subset = [a for a, h in zip(frames.atoms, has) if h]
        predicted = np.array([p.energy for p in predict(model, subset, head=head, forces=False, stress=False)])
        correction = _lstsq(A, energies[has] - predicted, zs, present, {z: 0.0 for z in zs}, what="estimated", log=log)
        return {z: base[z] + correction[z] for z in zs}
    raise DataError(f"data.E0s: unknown option {option!r}")


@torch.no_grad()
def set_e0s(model, e0s: dict[int, float]) -> None:
    """Write E0s into the model's buffer (every head gets the same values; a multi-fidelity
    model's modality only its own)."""
    write_e0s(model, torch.tensor([e0s[int(z)] for z in model.atomic_numbers], dtype=torch.float64))
