"""Check that a model's outputs transform correctly under E(3), permutations and periodicity.

Each structure is evaluated together with transformed copies of itself, and every output is
compared with the reference output transformed by its rule:

==================  ==========================================  ================
rule                meaning                                     under supercell
==================  ==========================================  ================
``global_0e``       one invariant scalar per structure          extensive (x n)
``global_tensor2``  one cartesian rank-2 tensor, ``R S R^T``    intensive
``atom_0e``         invariant scalar per atom                   tiled
``atom_1o``         polar vector per atom, ``v R^T``, flips     tiled
                    under inversion
``atom_1e``         axial vector per atom, ``v R^T``, does not  tiled
                    flip under inversion
==================  ==========================================  ================

Extra heads (:mod:`sparseft.heads`) are checked by their declared irreps: an energy head's
``<head>.energy``/``.forces``/``.stress`` like the foundation's, a magnetic-moment head's
``<head>.magmoms`` by ``atom_<irreps_out>`` (``0e`` or ``1e``), compared relative to their own
size (floor 1e-9 μB), so a head that declares ``1e`` but outputs a polar vector fails the
inversion check.

Checks: ``rotation`` (random proper rotations of positions and cell about the origin),
``inversion`` (positions -> -positions, same cell), ``translation``, ``permutation``,
``periodic_images`` (atoms moved by random lattice vectors) and ``supercell``; the last two
only for fully periodic structures.

Error normalisation: ``max|actual - expected| / max(max|expected|, floor)``, i.e. relative to
the largest entry of the expected output, but never to less than ``floor`` in the output's
units: 1 (eV, eV/Å) by default, 0.01 eV/Å^3 (1.6 GPa) for stress (``DEFAULT_FLOORS``).
Energies dominated by E0 (say -8000 eV) are thus compared relative to their size, which is
what their rounding error scales with (the energy check is therefore coarse; forces are the
sensitive probe), and tiny forces or stresses (structures near equilibrium) are compared in
absolute terms so that rounding noise is not amplified. For ``supercell`` the energy error
is the relative error of the energy per atom.

Measured on ``tiny_mace`` models (H and O, max_ell 2, ``default_structures``, seeds 0-4),
largest error for ``hidden_irreps="8x0e+8x1o"`` / ``"8x0e"``::

    check            output   float64          float32
    rotation         energy   0     / 0        0     / 0
    rotation         forces   2e-15 / 3e-16    1e-07 / 8e-07
    rotation         stress   7e-15 / 1e-15    4e-07 / 3e-06
    inversion        forces   3e-16 / 8e-17    3e-08 / 2e-07
    inversion        stress   1e-15 / 3e-16    1e-07 / 4e-07
    translation      forces   1e-15 / 3e-16    1e-07 / 5e-07
    translation      stress   5e-15 / 8e-16    2e-07 / 2e-06
    permutation      energy   3e-16 / 3e-16    1e-07 / 1e-07
    permutation      forces   3e-16 / 8e-17    4e-08 / 1e-07
    permutation      stress   8e-16 / 2e-16    1e-07 / 6e-07
    periodic_images  forces   2e-15 / 4e-16    2e-07 / 5e-07
    periodic_images  stress   8e-15 / 1e-15    5e-07 / 2e-06
    supercell        energy   2e-16 / 2e-16    2e-07 / 2e-07
    supercell        forces   2e-15 / 4e-16    6e-08 / 3e-07
    supercell        stress   3e-15 / 6e-16    2e-07 / 1e-06

(energy errors not listed are exactly 0: the ~1e4 eV energies round to the same number).
Default tolerances (``DEFAULT_RTOL``): 1e-8 for float64, 1e-4 for float32, i.e. more than
30x above anything measured, since larger models (more channels, layers and neighbours)
accumulate more rounding than the tiny ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import ase
import numpy as np

from .._compat import torch
from ..predict import model_dtype, predict
from .structures import default_structures

RULES = ("global_0e", "global_tensor2", "atom_0e", "atom_1o", "atom_1e")
DEFAULT_RULES = {"energy": "global_0e", "forces": "atom_1o", "stress": "global_tensor2"}
DEFAULT_FLOORS = {"stress": 0.01}  # outputs not listed use 1.0
MAGMOM_FLOOR = 1e-9
ENERGY_HEAD_RULES = {"energy": "global_0e", "forces": "atom_1o", "stress": "global_tensor2"}
DEFAULT_RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}
FALLBACK_RTOL = 1e-2  # half precision and anything else
CHECKS = ("rotation", "inversion", "translation", "permutation", "periodic_images", "supercell")

Evaluate = Callable[[torch.nn.Module, list], list]


@dataclass
class Transform:
    """A transformed structure and how outputs map onto it.

    ``matrix`` acts on cartesian vectors (``v -> matrix @ v``), ``index[k]`` is the
    original atom that new atom ``k`` corresponds to, ``copies`` the number of copies of
    the structure (supercells).
    """

    check: str
    atoms: ase.Atoms
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    index: np.ndarray | None = None
    copies: int = 1


@dataclass
class Row:
    """Largest error of one output under one check, over all structures and repetitions."""

    check: str
    output: str
    max_error: float
    tolerance: float
    applies: bool = True  # False: the transform is not a symmetry of the base (inversion of an SO(3) model)

    @property
    def passed(self) -> bool:
        """Within tolerance; a row that does not apply is never counted as passed or failed."""
        return bool(self.max_error <= self.tolerance) or not self.applies  # NaN fails

    @property
    def result(self) -> str:
        if not self.applies:
            return "not a symmetry of this base"
        return "ok" if self.passed else "FAIL"


@dataclass
class EquivarianceReport:
    """Result of :func:`check_equivariance`: one row per check x output."""

    rows: list[Row]

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def row(self, check: str, output: str) -> Row:
        for row in self.rows:
            if (row.check, row.output) == (check, output):
                return row
        raise KeyError((check, output))

    def failures(self) -> list[tuple[str, str]]:
        """``(check, output)`` pairs that failed."""
        return [(row.check, row.output) for row in self.rows if not row.passed]

    def not_applicable(self) -> list[tuple[str, str]]:
        """``(check, output)`` pairs of transforms that are no symmetry of the base (not judged)."""
        return [(row.check, row.output) for row in self.rows if not row.applies]

    def format_table(self) -> str:
        header = ("check", "output", "max_error", "tolerance", "result")
        lines = [(r.check, r.output, f"{r.max_error:.2e}", f"{r.tolerance:.1e}", r.result) for r in self.rows]
        widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
        text = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *lines]]
        judged = len(self.rows) - len(self.not_applicable())
        text.append("PASS" if self.passed else f"FAIL ({len(self.failures())} of {judged} failed)")
        if self.not_applicable():
            text.append(f"not judged: {sorted({c for c, _ in self.not_applicable()})} (not a symmetry of this base)")
        return "\n".join(text)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "rows": [{**asdict(r), "passed": r.passed if r.applies else None} for r in self.rows],
        }

    def __str__(self) -> str:
        return self.format_table()


def predict_outputs(model, atoms_list, *, head: str | None = None) -> list[dict]:
    """Default ``evaluate``: energy, forces and (periodic structures) stress via :func:`predict`,
    and every extra head's outputs as ``<head>.<quantity>``."""
    outputs = []
    for p in predict(model, atoms_list, head=head):
        out = {"energy": p.energy, "forces": p.forces}
        if p.stress is not None:
            out["stress"] = p.stress
        for name, values in p.heads.items():
            out.update({f"{name}.{key}": value for key, value in values.items() if value is not None})
        outputs.append(out)
    return outputs


def head_rules(model) -> tuple[dict[str, str], dict[str, float]]:
    """Rules and floors for the extra heads of ``model``, from each head's declared irreps."""
    rules, floors = {}, {}
    for name, head in (getattr(model, "output_heads", None) or {}).items():
        if head.property == "energy":
            for key, rule in ENERGY_HEAD_RULES.items():
                rules[f"{name}.{key}"] = rule
            floors[f"{name}.stress"] = DEFAULT_FLOORS["stress"]
        else:
            rule = f"atom_{head.irreps_out}"
            if rule not in RULES:
                raise ValueError(f"head {name!r} declares irreps {head.irreps_out!r}; the harness checks {RULES}")
            rules[f"{name}.{head.property}"] = rule
            floors[f"{name}.{head.property}"] = MAGMOM_FLOOR
    return rules, floors


def check_equivariance(
    model,
    structures=None,
    *,
    head: str | None = None,
    seed: int = 0,
    n_rotations: int = 2,
    rtol: float | None = None,
    supercell=(2, 1, 1),
    evaluate: Evaluate | None = None,
    rules: dict[str, str] | None = None,
    floors: dict[str, float] | None = None,
    symmetry: str | None = None,
    on_structure=None,
) -> EquivarianceReport:
    """Evaluate ``model`` on each structure and transformed copies and compare (see module doc).

    ``evaluate(model, atoms_list) -> list[dict[name, array | float]]`` computes the outputs
    (default: energy/forces/stress from :func:`predict`, plus every extra head's outputs);
    ``rules`` maps each output name to a rule in ``RULES`` (default ``DEFAULT_RULES`` plus
    :func:`head_rules`). Outputs missing from a structure's
    dict (e.g. stress of a cluster) are skipped. ``floors`` (per output, default
    ``DEFAULT_FLOORS``, else 1.0) set the error normalisation. ``rtol`` defaults to ``DEFAULT_RTOL`` for
    the model's dtype. ``symmetry`` ("O(3)" or "SO(3)"; default: the model's backend's) decides
    whether inversion is judged: for an SO(3) base it is reported as not a symmetry.
    ``on_structure()``, if given, is called after each structure (progress).
    """
    extra_rules, extra_floors = head_rules(model)
    rules = dict({**DEFAULT_RULES, **extra_rules} if rules is None else rules)
    floors = dict({**DEFAULT_FLOORS, **extra_floors} if floors is None else floors)
    unknown = {name: rule for name, rule in rules.items() if rule not in RULES}
    if unknown:
        raise ValueError(f"unknown rules {unknown}; expected one of {RULES}")
    if evaluate is None:
        evaluate = lambda m, atoms_list: predict_outputs(m, atoms_list, head=head)  # noqa: E731
    if rtol is None:
        rtol = DEFAULT_RTOL.get(model_dtype(model), FALLBACK_RTOL)
    if structures is None:
        structures = default_structures(model, seed=seed)
    rng = np.random.default_rng(seed)

    worst: dict[tuple[str, str], float] = {}
    for atoms in structures:
        transforms = make_transforms(atoms, rng, n_rotations=n_rotations, supercell=supercell)
        reference, *outputs = evaluate(model, [atoms] + [t.atoms for t in transforms])
        for transform, output in zip(transforms, outputs):
            for name, rule in rules.items():
                if name not in reference or name not in output:
                    continue
                expected = transform_output(reference[name], rule, transform)
                error = relative_error(output[name], expected, floor=floors.get(name, 1.0))
                key = (transform.check, name)
                worst[key] = _worse(worst.get(key), error)
        if on_structure is not None:
            on_structure()

    order = {check: i for i, check in enumerate(CHECKS)}
    names = list(rules)
    keys = sorted(worst, key=lambda k: (order.get(k[0], len(order)), names.index(k[1])))
    skip = {"inversion"} if (symmetry or _symmetry(model)) == "SO(3)" else set()
    return EquivarianceReport([Row(check, name, worst[(check, name)], rtol, check not in skip) for check, name in keys])


def _symmetry(model) -> str:
    """The symmetry the model's backend promises ("O(3)" for models of no backend)."""
    from ..core.backend import BackendError, backend_of

    try:
        return backend_of(model).symmetry
    except BackendError:
        return "O(3)"


def _worse(current: float | None, error: float) -> float:
    """The larger of two errors; NaN (an output that is not a number) is worse than any number
    and, once seen, stays."""
    if current is None or np.isnan(error):
        return error
    return current if np.isnan(current) or current >= error else error


def relative_error(actual, expected, *, floor: float = 1.0) -> float:
    """``max|actual - expected| / max(max|expected|, floor)``."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    if actual.shape != expected.shape:
        return float("inf")
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), floor))


def transform_output(value, rule: str, transform: Transform):
    """What a reference output should become on ``transform.atoms``."""
    matrix = transform.matrix
    if rule == "global_0e":
        return float(value) * transform.copies
    if rule == "global_tensor2":
        return matrix @ np.asarray(value) @ matrix.T
    value = np.asarray(value)
    if transform.index is not None:
        value = value[transform.index]
    if rule == "atom_0e":
        return value
    if rule == "atom_1o":
        return value @ matrix.T
    if rule == "atom_1e":
        return value @ matrix.T * np.linalg.det(matrix)
    raise ValueError(f"unknown rule {rule!r}")


def make_transforms(atoms: ase.Atoms, rng: np.random.Generator, *, n_rotations: int, supercell) -> list[Transform]:
    """The transformed copies of one structure, one ``Transform`` per comparison."""
    transforms = [rotated(atoms, random_rotation(rng)) for _ in range(n_rotations)]
    transforms.append(inverted(atoms))
    transforms.append(Transform("translation", _moved(atoms, atoms.positions + rng.normal(scale=2.0, size=3))))
    permutation = rng.permutation(len(atoms))
    transforms.append(Transform("permutation", atoms[permutation], index=permutation))
    if atoms.pbc.all():
        shifts = rng.integers(-2, 3, size=(len(atoms), 3))
        transforms.append(Transform("periodic_images", _moved(atoms, atoms.positions + shifts @ atoms.cell.array)))
        copies = int(np.prod(supercell))
        if copies > 1:
            index = np.tile(np.arange(len(atoms)), copies)
            transforms.append(Transform("supercell", atoms.repeat(supercell), index=index, copies=copies))
    return transforms


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotated(atoms: ase.Atoms, rotation: np.ndarray) -> Transform:
    """Rotate positions and cell about the origin."""
    new = _moved(atoms, atoms.positions @ rotation.T)
    new.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    return Transform("rotation", new, matrix=rotation)


def inverted(atoms: ase.Atoms) -> Transform:
    """Positions -> -positions; the cell stays (the lattice {-a} is the lattice {a})."""
    return Transform("inversion", _moved(atoms, -atoms.positions), matrix=-np.eye(3))


def _moved(atoms: ase.Atoms, positions: np.ndarray) -> ase.Atoms:
    new = atoms.copy()
    new.positions = positions
    return new
