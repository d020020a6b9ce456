"""mace_run_train's IsolatedAtom convention: single-atom frames with ``config_type: IsolatedAtom``
give their element's E0 (when the recipe does not set E0s) and are never trained or evaluated on."""

from __future__ import annotations

from ase.data import chemical_symbols

from .data import Frames

ISOLATED = "IsolatedAtom"
ISOLATED_KEY = "_isolated_source"  # load_splits' entry for the training frames before IsolatedAtom removal


def is_isolated(atoms) -> bool:
    """mace's test: one atom and ``config_type == "IsolatedAtom"``."""
    return len(atoms) == 1 and atoms.info.get("config_type") == ISOLATED


def isolated_energies(frames: Frames, energy_key: str | None) -> dict[int, float]:
    """``{Z: energy}`` of the IsolatedAtom frames that carry ``energy_key`` (the last wins, as in mace)."""
    return {
        int(a.numbers[0]): float(a.info[energy_key])
        for a in frames.atoms
        if is_isolated(a) and energy_key is not None and energy_key in a.info
    }


def untagged_single_atoms(frames: Frames) -> str | None:
    """``"<file>: frames 0, 1, 2"`` (per file) of the single-atom frames without
    ``config_type: IsolatedAtom``, or None."""
    by_file: dict[str, list[str]] = {}
    for atoms, name in zip(frames.atoms, frames.names()):
        if len(atoms) == 1 and not is_isolated(atoms):
            path, index = name.rsplit(": frame ", 1)
            by_file.setdefault(path, []).append(index)
    parts = [
        f"{path}: frame{'s' if len(idx) > 1 else ''} {', '.join(idx[:10])}{' ...' if len(idx) > 10 else ''}"
        for path, idx in by_file.items()
    ]
    return "; ".join(parts) or None


def single_atom_warning(where: str, frames: Frames, e0s: dict, train: bool) -> str | None:
    """The warning for single-atom frames not tagged as IsolatedAtom (``where``: the recipe key;
    ``e0s``: recipe key -> E0s option, e.g. ``{"data.E0s": "average"}``): mace_run_train trains on
    them (and fits E0s with them) as on any frame; say so and how to mark them."""
    names = untagged_single_atoms(frames)
    if names is None:
        return None
    use = "trained on as ordinary structures" if train else "evaluated as ordinary structures"
    fits = [f"{key}: {option}" for key, option in e0s.items() if option in ("average", "estimated")]
    if train and fits:
        use += f" and enter the E0s fit of {', '.join(fits)}"
    return (
        f"WARNING: {where}: {names} {'are single atoms' if ', ' in names else 'is a single atom'} without "
        f"config_type=IsolatedAtom: {use}, as in mace_run_train. If they are isolated-atom reference energies, "
        f"add config_type=IsolatedAtom to their comment line: they are then not trained on, and their energies "
        f"are the E0s unless data.E0s is set"
    )


def without_isolated(frames: Frames) -> Frames:
    """The frames minus the IsolatedAtom ones (an error when nothing else is left)."""
    keep = [(a, i) for a, i in zip(frames.atoms, frames.indices) if not is_isolated(a)]
    if not keep:
        from .data import DataError

        raise DataError(f"{frames.path}: every frame is an IsolatedAtom frame; nothing is left to train or evaluate on")
    return Frames(frames.path, [a for a, _ in keep], [i for _, i in keep])


def e0s_option(raw_train: Frames, energy_key: str | None, option, log):
    """The E0s option to use: ``option`` when the recipe sets one, else the isolated energies of
    the training file (``{Z: eV}``; other elements keep the foundation's), else ``"foundation"``;
    ``log`` says what happened to the IsolatedAtom frames (``raw_train``: before removal)."""
    energies = isolated_energies(raw_train, energy_key)
    dropped = sum(is_isolated(a) for a in raw_train.atoms)
    if dropped:
        if option is None and energies:
            used = (
                f"their energies are the E0s of {' '.join(chemical_symbols[z] for z in sorted(energies))} "
                "(other elements: the foundation's)"
            )
        else:
            used = f"data.E0s: {option or 'foundation'} is used, not their energies"
        log(f"data: {dropped} IsolatedAtom frame(s) in the training data are not trained on; {used}")
    if option is not None:
        return option
    return energies if energies else "foundation"
