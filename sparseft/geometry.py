"""Checks that a structure can be evaluated at all: atoms present, finite positions and cell,
no coincident atoms (periodic images included), elements the model knows, and a neighbour list
of a size a machine can hold.

A model given NaN positions or two atoms at one place returns NaN or a finite nonsense energy
(and a NaN position can make the neighbour search take tens of seconds), so data files, the
Calculator, :func:`sparseft.predict` and ``sparseft check`` refuse such structures first. A cell
far too large for its atoms (1e4 Å of vacuum) makes the neighbour search's grid of cells explode
("Failed to allocate"), one far too small puts thousands of images of every atom in its cutoff
sphere: both are refused, with the estimate, before any graph is built.
"""

from __future__ import annotations

import math

import numpy as np
from ase.data import chemical_symbols

MIN_DISTANCE = 0.1  # Å: closer atoms are coincident (the shortest real bond, H2, is 0.74 Å)
MAX_NEIGHBOURS = 2000  # per atom within the cutoff: diamond (0.18 atoms/Å^3) has ~170 within 6 Å
MAX_SEARCH_CELLS = 2**30  # the neighbour search's grid (matscipy: 8 bytes a cell, ~8.6 GB)
MAX_CHECK_CELLS = 2**22  # the coincident-atom search's grid (~34 MB)
_INT_MAX = 2**31 - 1


class StructureError(ValueError):
    """A structure no model can evaluate; callers prefix where it came from (file, frame)."""


def closest_pair(atoms) -> tuple[int, int, float] | None:
    """``(i, j, distance)`` of the closest pair closer than ``MIN_DISTANCE`` (periodic images
    included; ``i == j`` for an atom and its own image), or None. matscipy's neighbour search
    (~3x faster than ASE's) over a box around the atoms in the non-periodic directions, with a
    search radius widened until its grid stays small (a 0.1 Å grid over a 100 Å cell would be
    1e9 cells)."""
    from matscipy.neighbours import neighbour_list

    cell, origin = _search_box(atoms)
    cutoff = MIN_DISTANCE
    while search_cells(cell, cutoff) > MAX_CHECK_CELLS:
        cutoff *= 2
    i, j, vectors, shifts = neighbour_list(
        "ijDS", positions=atoms.positions, cell=cell, cell_origin=origin, pbc=atoms.pbc, cutoff=cutoff
    )
    keep = (i != j) | np.any(shifts != 0, axis=1)
    return _closest(vectors[keep], np.stack((i[keep], j[keep])))


def _search_box(atoms) -> tuple[np.ndarray, np.ndarray]:
    """Cell and origin for the coincident-atom search: the periodic cell vectors, and in each
    non-periodic direction (an axis, as mace takes it) the span of the atoms plus 1 Å."""
    positions = atoms.positions
    cell = atoms.cell.array.copy() if atoms.pbc.any() else np.zeros((3, 3))
    origin = np.zeros(3)
    low, high = positions.min(axis=0), positions.max(axis=0)
    for d in range(3):
        if not atoms.pbc[d]:
            cell[d] = np.eye(3)[d] * (high[d] - low[d] + 1.0)
            origin[d] = low[d] - 0.5
    return cell, origin


def face_distances(cell) -> np.ndarray:
    """The distance between each pair of opposite faces of a cell (its heights; 0 for a flat
    cell). Plain arithmetic: ``np.cross`` costs ~0.2 ms, too much for every MD step."""
    return _cell_geometry(cell)[1]


def _cell_geometry(cell) -> tuple[float, np.ndarray]:
    """``(volume, face distances)`` of a 3x3 cell."""
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = np.asarray(cell, dtype=float).tolist()
    normals = (
        (b2 * c3 - b3 * c2, b3 * c1 - b1 * c3, b1 * c2 - b2 * c1),  # b x c
        (c2 * a3 - c3 * a2, c3 * a1 - c1 * a3, c1 * a2 - c2 * a1),  # c x a
        (a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1),  # a x b
    )
    volume = abs(a1 * normals[0][0] + a2 * normals[0][1] + a3 * normals[0][2])
    lengths = [math.sqrt(x * x + y * y + z * z) for x, y, z in normals]
    return volume, np.array([volume / n if n > 0 else 0.0 for n in lengths])


def search_cells(cell, cutoff: float) -> int:
    """How many grid cells matscipy's neighbour search allocates for ``cell`` and ``cutoff``
    (its own rule: one per ``cutoff`` of each height, halved until the count fits an int)."""
    n = [max(math.floor(h / cutoff), 1) for h in face_distances(cell).tolist()]
    while n[0] * n[1] * n[2] > _INT_MAX:
        n = [max(x // 2, 1) for x in n]
    return n[0] * n[1] * n[2]


def mace_search_cell(atoms, cutoff: float) -> np.ndarray:
    """The cell mace's ``get_neighborhood`` hands matscipy: the atoms' cell, each non-periodic
    direction replaced by 5 x cutoff x (largest |coordinate| + 1) along its axis."""
    cell = atoms.cell.array.copy()
    if not cell.any():
        cell = np.identity(3)
    pbc = atoms.pbc
    if not pbc.all():
        reach = (float(np.abs(atoms.positions).max()) + 1) * 5 * cutoff
        for d in range(3):
            if not pbc[d]:
                cell[d] = 0.0
                cell[d, d] = reach
    return cell


def neighbours_per_atom(atoms, cutoff: float) -> tuple[float, float]:
    """``(neighbours per atom, atoms per Å^3)``: atom density x cutoff sphere, periodic images
    included (the density of a periodic direction counts its height, of another the span of the
    atoms, at least the sphere's diameter), at most every image of every atom within reach."""
    n = len(atoms)
    pbc = [bool(p) for p in atoms.pbc]
    volume, heights = _cell_geometry(atoms.cell.array) if any(pbc) else (0.0, np.zeros(3))
    if not all(pbc):
        spans = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
        volume = math.prod(heights[d] if pbc[d] else max(spans[d], 2 * cutoff) for d in range(3))
    density = n / max(volume, 1e-12)
    images = n * math.prod(2 * math.ceil(cutoff / max(heights[d], 1e-12)) + 1 for d in range(3) if pbc[d])
    return float(min(density * 4 / 3 * math.pi * cutoff**3, images)), density


def check_neighbours(atoms, cutoff: float) -> None:
    """Raise :class:`StructureError` when the graph for ``cutoff`` would not fit a machine: the
    neighbour search's grid (a cell far too large) or the neighbours per atom (one far too small)."""
    cell = mace_search_cell(atoms, cutoff)
    cells = search_cells(cell, cutoff)
    if cells > MAX_SEARCH_CELLS:
        heights = face_distances(cell)
        widest = int(np.argmax(heights))
        if atoms.pbc[widest]:
            why = f"the cell is {heights[widest]:.3g} Å across: is it in Å, or mostly vacuum (then set pbc=F there)?"
        else:
            why = (
                f"an atom lies {np.abs(atoms.positions).max():.3g} Å from the origin and mace's search spans 5 x "
                "cutoff x that in each non-periodic direction: are the positions in Å?"
            )
        raise StructureError(
            f"the neighbour search for the model's {cutoff:g} Å cutoff would need {cells:.2g} cells "
            f"(~{8 * cells / 1e9:.0f} GB): {why}"
        )
    per_atom, density = neighbours_per_atom(atoms, cutoff)
    if per_atom > MAX_NEIGHBOURS:
        raise StructureError(
            f"about {per_atom:.0f} neighbours per atom within the model's {cutoff:g} Å cutoff "
            f"({density:.3g} atoms/Å³, periodic images included; no material has over {MAX_NEIGHBOURS}): "
            "the cell is far too small for its atoms (is it in Å, and scaled with them?)"
        )


def _closest(vectors: np.ndarray, edges: np.ndarray) -> tuple[int, int, float] | None:
    if not len(vectors):
        return None
    lengths = np.linalg.norm(vectors, axis=1)
    k = int(np.argmin(lengths))
    if lengths[k] >= MIN_DISTANCE:
        return None
    i, j = sorted((int(edges[0, k]), int(edges[1, k])))
    return i, j, float(lengths[k])


def _pair_error(pair: tuple[int, int, float]) -> StructureError:
    i, j, distance = pair
    return StructureError(
        f"atoms {i} and {j} are {distance:.3f} Å apart (coincident: closer than "
        f"{MIN_DISTANCE} Å, periodic images included)"
    )


def check_graph_distances(batch: dict) -> None:
    """The coincident-atom check on a mace batch that is already built (its edges hold every
    pair within the cutoff): costs microseconds, where a separate neighbour search costs
    milliseconds per MD step. The error names the structure when the batch holds several."""
    positions, edges = batch["positions"].detach(), batch["edge_index"]
    vectors = positions[edges[1]] - positions[edges[0]] + batch["shifts"].detach()
    if not len(vectors) or float(vectors.norm(dim=1).min()) >= MIN_DISTANCE:
        return
    ptr = batch["ptr"].cpu().numpy()
    pair = _closest(vectors.double().cpu().numpy(), edges.cpu().numpy())
    k = int(np.searchsorted(ptr, pair[0], side="right") - 1)
    exc = _pair_error((pair[0] - int(ptr[k]), pair[1] - int(ptr[k]), pair[2]))
    raise StructureError(f"structure {k}: {exc}" if len(ptr) > 2 else str(exc))


def check_structure(atoms, zs=None, *, distances: bool = True, cutoff: float | None = None) -> None:
    """Raise :class:`StructureError` for a structure no model can evaluate; ``zs`` (the model's
    atomic numbers) also refuses elements the model lacks; ``cutoff`` (the model's) a neighbour
    list that would not fit (:func:`check_neighbours`); ``distances=False`` leaves the
    coincident-atom check to :func:`check_graph_distances`."""
    if len(atoms) == 0:
        raise StructureError("no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        raise StructureError("positions contain NaN or inf")
    if not np.all(np.isfinite(atoms.cell.array)):
        raise StructureError("cell contains NaN or inf")
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-6:
        raise StructureError("periodic but the cell has zero volume")
    if zs is not None:
        known = {int(z) for z in zs}
        for index, z in enumerate(atoms.numbers.tolist()):
            if z not in known:
                names = " ".join(chemical_symbols[x] for x in zs)
                raise StructureError(
                    f"element {chemical_symbols[z]} (atom {index}) is not in the model; "
                    f"the model's elements are {names}"
                )
    if cutoff is not None:
        check_neighbours(atoms, cutoff)
    pair = closest_pair(atoms) if distances else None
    if pair is not None:
        raise _pair_error(pair)
