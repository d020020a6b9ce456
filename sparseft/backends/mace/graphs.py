"""ASE structures -> graph items with mace-torch's own data classes (``AtomicData``)."""

from __future__ import annotations

from ..._compat import default_dtype
from ...core.facts import model_heads

MISSING_KEY = "__sparseft_no_label__"  # a disabled label: a key no frame has


def graphs(atoms_list, model, *, labels=None, head=None, config_type_weights=None) -> list[dict]:
    """mace ``AtomicData`` (graph + labels of ``labels``, a :class:`sparseft.labels.Keys`; loss
    weight from ``config_type_weights`` x ``info["config_weight"]`` as in mace) as dicts of
    tensors, in the model's dtype, element table, cutoff and heads."""
    from mace import data
    from mace.tools import AtomicNumberTable

    heads = model_heads(model)
    head = head or heads[0]
    if head not in heads:
        raise ValueError(f"head {head!r} not in the model's heads {heads}")
    if labels is None:
        spec = data.KeySpecification()
    else:
        pick = lambda key: MISSING_KEY if key is None else key  # noqa: E731
        spec = data.KeySpecification(
            info_keys={"energy": pick(labels.energy), "stress": pick(labels.stress), "virials": pick(labels.virials)},
            arrays_keys={"forces": pick(labels.forces)},
        )
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    out = []
    with default_dtype(dtype):
        for atoms in atoms_list:
            item = data.AtomicData.from_config(
                data.config_from_atoms(atoms, spec, config_type_weights=config_type_weights or None, head_name=head),
                z_table=z_table,
                cutoff=cutoff,
                heads=heads,
            )
            out.append({k: v for k, v in item.to_dict().items() if v is not None})
    return out
