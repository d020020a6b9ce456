"""The label protocol: where a task's labels sit in a frame and how they become tensors.

One class per kind of label set (:class:`Keys` for an energy head's energy/forces/stress/
virials, :class:`MagmomKeys` for magnetic moments), each with ``attach`` (copy labels into
place, from an ASE calculator where allowed), ``validate`` (shapes and finite values),
``count`` (frames carrying each label) and ``tensors`` (a frame's labels for a head's batch
entries). Data and heads code call these and never switch on the type. A new head kind
declares its label set here. Imports nothing of sparseft but :mod:`sparseft._compat`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._compat import torch


class DataError(ValueError):
    """Bad input data; the message names the file and frame."""


def _calc_value(atoms, name):
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(name)


def full_stress(value):
    """A 3x3 stress from Voigt (6) or flat (9) form; anything else (a string, a boolean, another
    shape) is returned unchanged for ``validate`` to report."""
    try:
        stress = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return value
    if isinstance(value, (bool, np.bool_)) or np.asarray(value).dtype == bool:
        return value
    if stress.shape == (6,):
        xx, yy, zz, yz, xz, xy = stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return stress.reshape(3, 3) if stress.size == 9 else value


def check_label(name: str | None, value, shape: tuple | None, where: str, hint: str = "") -> None:
    """Raise :class:`DataError` (``where``: file and frame) unless ``value`` is finite numbers of
    ``shape`` (``None``: one number; a boolean, e.g. extxyz's ``T``, is not a number)."""
    if isinstance(value, (bool, np.bool_)) or np.asarray(value).dtype == bool:
        raise DataError(f"{where}: {name} is a boolean ({value!r}), not a number")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {name} is not numeric ({value!r})") from exc
    if shape is None and array.ndim != 0:
        raise DataError(f"{where}: {name} must be one number, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise DataError(f"{where}: {name} has shape {array.shape}, expected {shape}{hint}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{where}: {name} contains NaN or inf")


def _entry(value, shape, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if value is None:
        return torch.zeros(shape, dtype=dtype), torch.zeros(1, dtype=dtype)
    return torch.tensor(np.asarray(value, dtype=float).reshape(shape), dtype=dtype), torch.ones(1, dtype=dtype)


def _get(store: dict, key: str | None):
    return store.get(key) if key is not None else None


def _has(store: dict, key: str | None) -> bool:
    return key is not None and key in store


def batch_entries(name: str, entries: dict) -> dict[str, torch.Tensor]:
    """``<head>__<quantity>`` values plus ``<head>__<quantity>_weight`` (1 present, 0 missing)."""
    out = {}
    for quantity, (value, weight) in entries.items():
        out[f"{name}__{quantity}"] = value
        out[f"{name}__{quantity}_weight"] = weight
    return out


@dataclass(frozen=True)
class Keys:
    """Where an energy head's labels sit; ``None`` disables a label."""

    energy: str | None = "REF_energy"
    forces: str | None = "REF_forces"
    stress: str | None = "REF_stress"
    virials: str | None = "REF_virials"

    def attach(self, atoms, copy, use_calculator: bool = True) -> None:
        """Put ``atoms``' labels into ``copy`` under these keys (calculator values where a key is
        missing and ``use_calculator``); virials of a periodic frame without stress become stress."""
        for name, key, where in (
            ("energy", self.energy, "info"),
            ("stress", self.stress, "info"),
            ("virials", self.virials, "info"),
            ("forces", self.forces, "arrays"),
        ):
            store = copy.info if where == "info" else copy.arrays
            if key is not None and key not in store and use_calculator:
                free = name == "energy" and _calc_value(atoms, "energy") is None
                value = _calc_value(atoms, "free_energy" if free else name)
                if value is not None:
                    store[key] = np.array(value) if where == "arrays" else value
        if _has(copy.info, self.stress):
            copy.info[self.stress] = full_stress(copy.info[self.stress])
        elif self.stress is not None and _has(copy.info, self.virials) and copy.pbc.all() and copy.cell.volume > 0:
            virials = full_stress(copy.info[self.virials])
            if np.shape(virials) == (3, 3):  # otherwise validate() names the bad virials
                copy.info[self.stress] = -virials / copy.cell.volume

    def validate(self, atoms, where: str) -> None:
        """Raise :class:`DataError` (``where``: file and frame) for a label that is not finite
        numbers of its shape: one energy, (atoms, 3) forces, 3x3 (6 Voigt or 9) stress/virials."""
        voigt = " (6 Voigt or 9 numbers)"
        for key, store, shape, hint in (
            (self.energy, atoms.info, None, ""),
            (self.stress, atoms.info, (3, 3), voigt),
            (self.virials, atoms.info, (3, 3), voigt),
            (self.forces, atoms.arrays, (len(atoms), 3), ""),
        ):
            if _has(store, key):
                check_label(key, full_stress(store[key]) if shape == (3, 3) else store[key], shape, where, hint)

    def count(self, frames_atoms: list) -> dict[str, int]:
        """How many frames carry each label."""
        return {
            "energy": sum(_has(a.info, self.energy) for a in frames_atoms),
            "forces": sum(_has(a.arrays, self.forces) for a in frames_atoms),
            "stress": sum(_has(a.info, self.stress) for a in frames_atoms),
            "virials": sum(_has(a.info, self.virials) for a in frames_atoms),
        }

    def trains(self, counts: dict[str, int]) -> bool:
        """Whether ``count`` found labels a head can train on."""
        return bool(counts.get("energy") or counts.get("forces"))

    def wanted(self) -> list[str | None]:
        """The label keys named in a "no frame carries its labels" error."""
        return [self.energy, self.forces]

    def slots(self) -> list[tuple[str, str | None, str]]:
        """``(recipe key name, key, "info" or "arrays")`` of each label: where it must sit."""
        return [
            ("energy_key", self.energy, "info"),
            ("forces_key", self.forces, "arrays"),
            ("stress_key", self.stress, "info"),
            ("virials_key", self.virials, "info"),
        ]

    def tensors(self, atoms, name: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """One frame's batch entries for head ``name`` (labels already attached)."""
        n = len(atoms)
        return batch_entries(
            name,
            {
                "energy": _entry(_get(atoms.info, self.energy), (1,), dtype),
                "forces": _entry(_get(atoms.arrays, self.forces), (n, 3), dtype),
                "stress": _entry(_get(atoms.info, self.stress), (1, 3, 3), dtype),
            },
        )


@dataclass(frozen=True)
class MagmomKeys:
    """Where a magnetic-moment head's labels sit: per-atom ``magmoms`` (``arrays``; an ASE
    calculator's final ``magmoms`` otherwise; ``initial_magmoms`` names ASE's own array) and the
    structure's ``total`` moment (``info``; a calculator's ``magmom`` otherwise)."""

    magmoms: str = "REF_magmoms"
    total: str | None = "REF_total_magmom"
    vector: bool = False

    def attach(self, atoms, copy, use_calculator: bool = True) -> None:
        """Put ``atoms``' moments into ``copy`` (calculator values where a key is missing)."""
        if self.magmoms not in copy.arrays and use_calculator:
            value = _calc_value(atoms, "magmoms")
            if value is not None:
                copy.arrays[self.magmoms] = np.array(value, dtype=float)
        if self.total is not None and self.total not in copy.info and use_calculator:
            value = _calc_value(atoms, "magmom")
            if value is not None:
                copy.info[self.total] = float(value)

    def validate(self, atoms, where: str) -> None:
        """As :meth:`Keys.validate`: one collinear moment, or one vector, per atom; one total."""
        if self.magmoms in atoms.arrays:
            want = (len(atoms), 3) if self.vector else (len(atoms),)
            kind = " (vector (x, y, z) moments)" if self.vector else " (one collinear moment per atom)"
            check_label(self.magmoms, atoms.arrays[self.magmoms], want, where, kind)
        if _has(atoms.info, self.total):
            check_label(self.total, atoms.info[self.total], None, where)

    def count(self, frames_atoms: list) -> dict[str, int]:
        return {
            "magmoms": sum(self.magmoms in a.arrays for a in frames_atoms),
            "total": sum(_has(a.info, self.total) for a in frames_atoms),
        }

    def trains(self, counts: dict[str, int]) -> bool:
        return bool(counts.get("magmoms"))

    def wanted(self) -> list[str | None]:
        return [self.magmoms]

    def slots(self) -> list[tuple[str, str | None, str]]:
        return [("magmom_key", self.magmoms, "arrays"), ("total_key", self.total, "info")]

    def tensors(self, atoms, name: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        n = len(atoms)
        return batch_entries(
            name,
            {
                "magmoms": _entry(_get(atoms.arrays, self.magmoms), (n, 3) if self.vector else (n,), dtype),
                "total_magmom": _entry(_get(atoms.info, self.total), (1,), dtype),
            },
        )
