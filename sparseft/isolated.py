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
