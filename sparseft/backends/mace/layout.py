"""How mace-torch lays out its weights: kinds, layers, and its own module types.

The e3nn modules (``Linear``, ``TensorProduct``, ``FullyConnectedNet``) are catalogued by
:mod:`sparseft.blocks`; this file adds mace's ``RadialMLP`` and ``SymmetricContraction`` and
names mace's parameters.
"""

from __future__ import annotations

from ..._compat import torch
from ...blocks import Layout, WeightBlock, conv_paths, radial_matrix_blocks

KIND_RULES = (
    (r"^node_embedding\.", "embedding"),
    (r"^joint_embedding\.", "embedding"),
    (r"^embedding_readout\.", "readout"),
    (r"^interactions\.\d+\.(source|target)_embedding\.", "embedding"),
    (r"^interactions\.\d+\.conv_tp_weights\.", "radial"),
    (r"^interactions\.\d+\.density_fn\.", "density"),
    (r"^interactions\.\d+\.linear_up\.", "linear_up"),
    (r"^interactions\.\d+\.(skip_tp|skip_linear)\.", "skip"),
    (r"^interactions\.\d+\.(linear|linear_down|linear_res|linear_1|linear_2)\.", "linear"),
    (r"^products\.\d+\.symmetric_contractions\.", "contraction"),
    (r"^products\.\d+\.linear\.", "product_linear"),
    (r"^readouts\.\d+\.", "readout"),
    (r"^radial_embedding\.", "radial"),
)

# 1-D parameters outside the handled modules that are known to be invariant scalars
# (mace_run_train saves fine-tuned models with trainable Bessel frequencies)
KNOWN_VECTORS = (r"^radial_embedding\.bessel_fn\.bessel_weights$",)


def _radial_mlp_blocks(prefix, mod, model, kind, layer, layout):
    """mace ``RadialMLP``: ``net.K`` torch Linear (out, in) + bias, and LayerNorm weight/bias."""
    paths = conv_paths(model, prefix, layout) if kind == "radial" else None
    linears = [i for i, m in enumerate(mod.net) if isinstance(m, torch.nn.Linear)]
    out = []
    for i, m in enumerate(mod.net):
        base = f"{prefix}net.{i}."
        if isinstance(m, torch.nn.Linear):
            n_out, n_in = m.weight.shape
            last_paths = paths if i == linears[-1] else None
            out += radial_matrix_blocks(base + "weight", kind, layer, n_in, n_out, True, last_paths, f"net.{i}")
            if m.bias is not None:
                if last_paths is not None and sum(p[2] for p in last_paths) == n_out:
                    start = 0
                    for j, (ir_in, ir_out, width) in enumerate(last_paths):
                        out.append(
                            WeightBlock(
                                base + "bias",
                                kind,
                                layer,
                                start,
                                (width,),
                                (1,),
                                ir_in,
                                ir_out,
                                None,
                                f"net.{i} bias path {ir_in}->{ir_out}#{j}",
                            )
                        )
                        start += width
                else:
                    out.append(WeightBlock(base + "bias", kind, layer, 0, (n_out,), (1,), detail=f"net.{i} bias"))
        elif isinstance(m, torch.nn.LayerNorm):
            for p in ("weight", "bias"):
                if getattr(m, p, None) is not None:
                    out.append(
                        WeightBlock(
                            base + p, kind, layer, 0, (m.normalized_shape[0],), (1,), detail=f"net.{i} layernorm {p}"
                        )
                    )
    return out


def _contraction_blocks(prefix, mod, model, kind, layer, irrep_out):
    """mace ``Contraction``: ``weights_max`` (nu = correlation) and ``weights.k`` (nu = correlation-1-k),
    each (num_elements, num_coupling_paths, channels); one block per element."""
    out = []
    zs = [int(z) for z in model.atomic_numbers]
    entries = [("weights_max", mod.weights_max, mod.correlation)]
    entries += [(f"weights.{k}", w, mod.correlation - 1 - k) for k, w in enumerate(mod.weights)]
    for pname, w, nu in entries:
        n_el, n_paths, channels = w.shape
        for e in range(n_el):
            z = zs[e] if n_el == len(zs) and n_el > 1 else None
            detail = f"{irrep_out} nu={nu}" + (f" Z={z}" if z is not None else "")
            out.append(
                WeightBlock(
                    prefix + pname,
                    kind,
                    layer,
                    e * n_paths * channels,
                    (n_paths, channels),
                    (channels, 1),
                    None,
                    irrep_out,
                    z,
                    detail,
                )
            )
    return out


def _handler(prefix, mod, model, kind, layer, layout):
    from mace.modules.radial import RadialMLP
    from mace.modules.symmetric_contraction import Contraction, SymmetricContraction

    if isinstance(mod, RadialMLP):
        return _radial_mlp_blocks(prefix, mod, model, kind, layer, layout)
    if isinstance(mod, SymmetricContraction):
        out = []
        for j, (contraction, irrep) in enumerate(zip(mod.contractions, mod.irreps_out)):
            out += _contraction_blocks(f"{prefix}contractions.{j}.", contraction, model, kind, layer, str(irrep.ir))
        return out
    if isinstance(mod, Contraction):
        return []  # handled by its SymmetricContraction
    return None


def layout() -> Layout:
    """mace-torch's :class:`~sparseft.blocks.Layout`."""
    from mace.modules.radial import RadialMLP
    from mace.modules.symmetric_contraction import SymmetricContraction

    return Layout(
        kind_rules=KIND_RULES,
        layer=r"^(?:interactions|products|readouts)\.(\d+)\.",
        conv_sibling="conv_tp",
        known_vectors=KNOWN_VECTORS,
        handler=_handler,
        handled=(RadialMLP, SymmetricContraction),
    )
