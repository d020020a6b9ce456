"""The data step: every data file read, labelled, checked and split; replay frames added."""

from __future__ import annotations

from ..data import DataError, Frames, Keys, attach_labels, label_counts, read_frames, split, validate
from ..heads import setup as head_setup
from ..isolated import ISOLATED_KEY, single_atom_warning, without_isolated
from ..label_check import check_evaluation_sets, check_keys, check_placement
from ..recipe import Recipe


def embedded_path(value: str | None) -> str | None:
    if value and value.startswith("embedded:"):
        from ..embedded import DOMAIN_DIR

        return str(DOMAIN_DIR / value.split(":", 1)[1])
    return value


def foundation_keys(recipe: Recipe) -> Keys:
    d = recipe.data
    return Keys(d.energy_key, d.forces_key, d.stress_key, d.virials_key)


def as_list(value) -> list:
    return [] if not value else value if isinstance(value, list) else [value]


def load_splits(recipe: Recipe, zs: list[int], log=None, cutoff: float | None = None) -> dict[str, Frames]:
    """Read, label and validate every data file, then split; all checks happen before training
    (``log`` hears the notes and warnings of :mod:`sparseft.label_check`; ``cutoff``: the
    model's, to refuse frames whose neighbour list would explode)."""
    d = recipe.data
    log = log or (lambda _msg: None)
    keys = foundation_keys(recipe)
    extra = head_setup.label_sets(recipe.heads, d.calculator_labels)
    foundation_set = [(keys, "data.")]
    head_sets = [(head_setup.label_keys(h), f"heads[{i}].") for i, h in enumerate(recipe.heads)]

    owners = head_setup.label_owners(keys, recipe.heads)

    def read_one(where, value):
        try:
            raw = read_frames(embedded_path(value))
            frames = attach_labels(raw, keys, use_calculator=d.calculator_labels == "foundation", extra=extra)
            validate(frames, zs, keys, extra=extra, cutoff=cutoff)
            check_placement(frames, foundation_set + head_sets)
        except DataError as exc:
            raise DataError(f"data.{where}: {exc}") from exc
        e0s = {"data.E0s": d.E0s, **{f"heads[{i}].E0s": getattr(h, "E0s", None) for i, h in enumerate(recipe.heads)}}
        warning = single_atom_warning(f"data.{where}", frames, e0s, where.startswith("train"))
        if warning:
            log(warning)
        return raw, frames

    def read(where, value):
        if not value:
            return None
        if not isinstance(value, list):
            read_parts = [read_one(where, value)]
            raw, frames = read_parts[0][0].atoms, read_parts[0][1]
        else:
            read_parts = [read_one(f"{where}[{i}]", v) for i, v in enumerate(value)]  # e.g. new data + replay data
            raw = [a for r, _ in read_parts for a in r.atoms]
            parts = [p for _, p in read_parts]
            frames = Frames(
                " + ".join(p.path for p in parts),
                [a for p in parts for a in p.atoms],
                [i for p in parts for i in p.indices],
                [p.path for p in parts for _ in p.atoms],
            )
        train = where == "train"  # a key need only be in one file of a list (new data + replay)
        try:
            notes = check_keys(raw, frames, foundation_set + (head_sets if train else []), train=train)
        except DataError as exc:
            raise DataError(f"data.{where}: {exc}") from exc
        for i, (raw_part, part) in enumerate(read_parts):  # after the key checks: a misspelled key first
            try:
                head_setup.check_routing(raw_part, part, owners)  # a label trains one head
            except DataError as exc:
                name = where if len(read_parts) == 1 else f"{where}[{i}]"
                raise DataError(f"data.{name}: {exc}") from exc
        for note in notes:
            log(f"note: data.{where}: {note}")
        return frames

    train, valid, test = (read(name, getattr(d, name)) for name in ("train", "valid", "test"))
    isolated = train  # mace's IsolatedAtom frames leave every set before the split (sparseft.isolated)
    train, valid, test = (None if f is None else without_isolated(f) for f in (train, valid, test))
    held_out = {}  # split name -> the file its frames were held out of
    if test is None and d.test_fraction > 0:
        train, test = split(train, d.test_fraction, d.split_seed + 1)
        held_out["test"] = train.path
    if valid is None and d.valid_fraction > 0:
        train, valid = split(train, d.valid_fraction, d.split_seed)
        held_out["valid"] = train.path
    splits = {"train": train, ISOLATED_KEY: isolated}
    if valid is not None:
        splits["valid"] = valid
    if test is not None:
        splits["test"] = test
    for name, path in d.evaluate.items():
        splits[name] = read(f"evaluate.{name}", path)
    heads_train = _heads_have_labels(recipe, train)  # first: it names a head without labels
    counts = label_counts(train, keys)
    if not (heads_train or counts["energy"] > 0 or counts["forces"] > 0):
        raise DataError(f"{train.path}: no frame has {keys.energy} or {keys.forces} labels (nor ASE calculator values)")
    check_evaluation_sets(splits, foundation_set + head_sets, held_out, log)
    return splits


def _heads_have_labels(recipe: Recipe, train: Frames) -> bool:
    """True when some head has labels in the training frames; a head without any (but the replay
    head, whose labels come with the replay frames, added later) is an error naming it."""
    replay_head = replay_head_name(recipe)
    has_any = False
    for i, head in enumerate(recipe.heads):
        head_keys = head_setup.label_keys(head)
        if head.name == replay_head:
            continue
        if not head_keys.trains(label_counts(train, head_keys)):
            raise DataError(
                f"heads[{i}] ({head.name}): no training frame in {train.path} carries its labels "
                f"({' or '.join(str(k) for k in head_keys.wanted())}, nor ASE calculator values)"
            )
        has_any = True
    return has_any


def replay_head_name(recipe: Recipe) -> str | None:
    """The head ``data.replay.head`` names (None: replay trains the foundation head, or no replay)."""
    from ..replay import ReplayConfig

    return None if recipe.data.replay is None else ReplayConfig.from_dict(recipe.data.replay).head


def with_replay(recipe: Recipe, train: Frames, base, e0s: dict, log) -> Frames:
    """The training frames followed by the replay frames of ``data.replay``."""
    from ..replay import ReplayConfig, replay_frames

    zs = [int(z) for z in base.atomic_numbers]
    config = ReplayConfig.from_dict(recipe.data.replay)
    keys = foundation_keys(recipe)
    head = next((h for h in recipe.heads if h.name == config.head), None)
    target = Keys(head.energy_key, head.forces_key, None, None) if head is not None else keys
    try:
        frames = replay_frames(config, train, base, e0s, keys, zs, embedded_path, log, target=target)
    except DataError as exc:
        raise DataError(f"data.replay: {exc}") from exc
    return Frames(f"{train.path} + {frames.path}", train.atoms + frames.atoms, train.indices + frames.indices)


def training_elements(splits: dict) -> list[int]:
    """Atomic numbers present in the training split, replay frames included (what the training
    data can reach)."""
    return sorted({int(z) for atoms in splits["train"].atoms for z in atoms.numbers})
