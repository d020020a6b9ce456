"""Replay (``data.replay``): structures trained on next to the new data to limit forgetting.

The structures come from a ``file``, or are *generated* from the training set (rattled,
strained and element-swapped copies). ``n`` of them are kept, chosen at random or by
farthest-point sampling on the base model's invariant descriptors (per-structure mean of
its 0e node features). Their labels are the file's own (``labels: file``, as mace's replay
with the pretraining data) or the **base model's** predictions made before training
(``labels: base``, pseudo-label replay: needs no pretraining data; the default for
generated structures). Every replay frame's loss is scaled by ``weight`` (mace's
``config_weight``). With ``head``, the replay labels train that energy head of the recipe
(a copy of the foundation readout on the shared trunk) instead of the foundation head, so base
labels and target labels train different readouts; the exported model keeps the target head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np

from ._compat import torch
from .data import DataError, Frames, Keys, attach_labels, read_frames, validate

REPLAY_TAG = "sparseft_replay"  # atoms.info flag on replay frames


@dataclass(frozen=True)
class ReplayConfig:
    """``source``: a file path or ``generate``; ``n``: how many (null: all, or one per training
    frame when generating); ``selection``: ``random`` or ``fps``; ``labels``: ``base`` or ``file``;
    ``weight``: loss weight of each replay frame; ``rattle`` (Å), ``strain`` (max fractional cell
    strain), ``swap`` (fraction of atoms whose element is swapped with another present element):
    how structures are generated; ``energy_key``/``forces_key``: the file's label keys
    (default: ``data``'s); ``head``: the energy head the replay labels train (default: the
    foundation head)."""

    source: str = "generate"
    n: int | None = None
    selection: str = "random"
    labels: str | None = None
    weight: float = 1.0
    rattle: float = 0.05
    strain: float = 0.02
    swap: float = 0.1
    seed: int = 0
    energy_key: str | None = None
    forces_key: str | None = None
    head: str | None = None

    @property
    def label_source(self) -> str:
        return self.labels or ("base" if self.source == "generate" else "file")

    @classmethod
    def from_dict(cls, data, where: str = "data.replay") -> "ReplayConfig":
        if isinstance(data, str):
            data = {"source": data}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a file name or a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(names)}")
        config = cls(**data)
        config.check(where)
        return config

    def check(self, where: str) -> None:
        if self.selection not in ("random", "fps"):
            raise ValueError(f"{where}.selection: {self.selection!r} is not random or fps")
        if self.labels not in (None, "base", "file"):
            raise ValueError(f"{where}.labels: {self.labels!r} is not base or file")
        if self.source == "generate" and self.labels == "file":
            raise ValueError(f"{where}.labels: generated structures have no file labels; use labels: base")
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise ValueError(f"{where}.n: must be a positive integer or null, got {self.n!r}")
        if not self.weight >= 0:
            raise ValueError(f"{where}.weight: must be >= 0, got {self.weight}")
        for name in ("rattle", "strain", "swap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def generate(train: Frames, count: int, config: ReplayConfig) -> list:
    """``count`` perturbed copies of training structures (cycled): cell strain, element swaps, rattle."""
    rng = np.random.default_rng(config.seed)
    out = []
    for i in range(count):
        atoms = train.atoms[i % len(train.atoms)].copy()
        atoms.calc = None
        atoms.info = {}
        for key in list(atoms.arrays):
            if key not in ("numbers", "positions"):
                del atoms.arrays[key]
        if config.strain and atoms.pbc.any():
            eps = rng.uniform(-config.strain, config.strain, (3, 3))
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        present = sorted(set(atoms.numbers.tolist()))
        if config.swap and len(present) > 1:
            numbers = atoms.numbers.copy()
            for j in np.flatnonzero(rng.random(len(atoms)) < config.swap):
                numbers[j] = rng.choice([z for z in present if z != numbers[j]])
            atoms.numbers = numbers
        if config.rattle:
            atoms.positions = atoms.positions + rng.normal(0.0, config.rattle, atoms.positions.shape)
        out.append(atoms)
    return out


@torch.no_grad()
def descriptors(model, atoms_list, batch_size: int = 8) -> np.ndarray:
    """Per-structure mean of the model's invariant (0e) node features."""
    from .core.facts import feature_irreps
    from .core.graph import loader, to_device
    from .heads.features import split_features
    from .predict import graphs

    irreps = feature_irreps(model)
    device = next(model.parameters()).device
    rows = []
    for batch in loader(graphs(atoms_list, model), batch_size, shuffle=False):
        batch = to_device(batch, device)
        with torch.enable_grad():  # mace's forward takes gradients of positions even without forces
            out = model(batch, training=False, compute_force=False, compute_stress=False)
        scalars = split_features(out["node_feats"].detach(), irreps).scalars
        counts = torch.bincount(batch["batch"]).clamp(min=1).unsqueeze(1)
        sums = torch.zeros(counts.numel(), scalars.shape[1], dtype=scalars.dtype, device=scalars.device)
        rows.append((sums.index_add(0, batch["batch"], scalars) / counts).cpu().double().numpy())
    return np.concatenate(rows)


def farthest_points(points: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """Greedy farthest-point sampling: ``n`` indices, each the farthest from those picked before."""
    rng = np.random.default_rng(seed)
    picked = [int(rng.integers(len(points)))]
    distance = np.linalg.norm(points - points[picked[0]], axis=1)
    while len(picked) < n:
        nxt = int(np.argmax(distance))
        picked.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return picked


def pseudo_label(model, atoms_list, keys: Keys, batch_size: int = 8) -> None:
    """Write ``model``'s energies and forces onto ``atoms_list`` under ``keys`` (in batches;
    forces need a gradient of positions only)."""
    from .core.graph import loader, to_device
    from .predict import graphs

    device = next(model.parameters()).device
    start = 0
    for batch in loader(graphs(atoms_list, model), batch_size, shuffle=False):
        batch = to_device(batch, device)
        out = model(batch, training=False, compute_force=keys.forces is not None, compute_stress=False)
        ptr = batch["ptr"].cpu().numpy()
        energies = out["energy"].detach().cpu().double().numpy()
        forces = out["forces"].detach().cpu().double().numpy() if keys.forces is not None else None
        for i in range(len(ptr) - 1):
            atoms = atoms_list[start + i]
            atoms.info[keys.energy] = float(energies[i])
            if forces is not None:
                atoms.arrays[keys.forces] = forces[ptr[i] : ptr[i + 1]]
        start += len(ptr) - 1


def replay_frames(
    config: ReplayConfig,
    train: Frames,
    base,
    e0s: dict,
    keys: Keys,
    zs: list[int],
    resolve_path=lambda p: p,
    log=print,
    target: Keys | None = None,
) -> Frames:
    """The replay frames of a fine-tune: read or generated, selected, labelled, weighted.
    ``keys``: the foundation head's label keys; ``target``: the keys the replay labels are
    written under (a replay head's; default ``keys``), the foundation's then removed."""
    target = target or keys
    if config.source == "generate":
        wanted = config.n or len(train.atoms)
        pool = generate(train, 3 * wanted if config.selection == "fps" else wanted, config)
        origin = f"generated from {train.path}"
    else:
        read = read_frames(resolve_path(config.source))
        origin = read.path
        file_keys = Keys(config.energy_key or keys.energy, config.forces_key or keys.forces, None, None)
        if config.label_source == "file":
            read = attach_labels(read, file_keys)
            validate(read, zs, file_keys, cutoff=float(base.r_max))
            pool = [_relabel(a, file_keys, target) for a in read.atoms]
        else:
            pool = [a.copy() for a in read.atoms]
    pool = [a for a in pool if len(a) > 1 and a.info.get("config_type") != "IsolatedAtom"]
    if not pool:
        raise DataError(f"data.replay: {origin} holds no structures to replay")
    for atoms in pool:  # no foundation labels on a replay frame but the ones written here
        stale = [keys, target] if config.label_source == "base" else [keys] if target != keys else []
        for k in stale:
            atoms.info.pop(k.energy, None)
            atoms.arrays.pop(k.forces, None) if k.forces else None
        atoms.calc = None
    n = min(config.n or len(pool), len(pool))
    chosen = _select(pool, n, config, base)
    if config.label_source == "base":
        labeller = copy.deepcopy(base)
        from .e0s import set_e0s

        set_e0s(labeller, e0s)  # the fine-tune's E0s: at zero delta the replay loss is exactly zero
        pseudo_label(labeller, chosen, target)
    for atoms in chosen:
        atoms.info["config_weight"] = config.weight
        atoms.info[REPLAY_TAG] = True
    frames = Frames(f"replay({origin})", chosen, list(range(len(chosen))))
    validate(frames, zs, target, cutoff=float(base.r_max))
    log(
        f"replay: {len(chosen)} structures {origin}, {config.selection} selection, labels from "
        f"{'the base model' if config.label_source == 'base' else 'the file'}, loss weight {config.weight}"
        + (f", training head {config.head!r}" if config.head else "")
    )
    return frames


def _relabel(atoms, source: Keys, target: Keys):
    """A copy with the labels of ``source`` keys moved to ``target`` keys."""
    out = atoms.copy()
    out.calc = None
    if source.energy in atoms.info and target.energy:
        out.info[target.energy] = atoms.info[source.energy]
    if source.forces and source.forces in atoms.arrays and target.forces:
        out.arrays[target.forces] = atoms.arrays[source.forces]
    return out


def _select(pool: list, n: int, config: ReplayConfig, base) -> list:
    if n >= len(pool):
        return pool
    if config.selection == "fps":
        order = farthest_points(descriptors(base, pool), n, config.seed)
    else:
        order = np.random.default_rng(config.seed).choice(len(pool), n, replace=False).tolist()
    return [pool[i] for i in order]
