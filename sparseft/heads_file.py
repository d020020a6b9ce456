"""``merged_with_heads.model``: a sparseft model with heads, in a wrapper that MACE tools cannot
mistake for a mace model.

mace's tools load any pickled module and call it; a sparseft model with heads would run and
silently give the foundation head's energies. The wrapper answers every attribute a tool
asks for (``.to``, ``.heads``, ``.r_max`` ...) with :class:`NotAMaceModelError`, naming the
files that do run there. :func:`sparseft.load_model` unwraps it.
"""

from __future__ import annotations


class NotAMaceModelError(TypeError):
    """A MACE tool was given a sparseft file with heads."""


class SparseftHeadsFile:
    """Holds ``headed`` (a :class:`sparseft.heads.HeadedModel`); everything else is an error."""

    def __init__(self, headed, kinds: dict[str, str]):
        self.__dict__.update(headed=headed, kinds=dict(kinds))

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        kinds = self.__dict__.get("kinds", {})
        heads = ", ".join(f"{n} ({k})" for n, k in kinds.items())
        energy = [n for n, k in kinds.items() if k == "energy"]
        where = (
            (
                f"; for MACE tools use merged_multihead.model (mace heads for {', '.join(energy)}) or "
                f"`sparseft export FILE --head {energy[0]} -o {energy[0]}.model`"
            )
            if energy
            else ""
        )
        raise NotAMaceModelError(
            f"this file is a sparseft model with heads [{heads}], not a mace-torch model: run it with "
            f"sparseft.Calculator(FILE, head=...)" + where
        )


def wrap_for_file(headed) -> SparseftHeadsFile:
    """What ``merged_with_heads.model`` pickles."""
    return SparseftHeadsFile(headed, {n: h.kind for n, h in headed.output_heads.items()})


def unwrap(obj):
    """The model inside a :class:`SparseftHeadsFile`; anything else unchanged."""
    return obj.__dict__["headed"] if isinstance(obj, SparseftHeadsFile) else obj
