"""The weight catalogue: every trainable weight of a model as named blocks.

The e3nn part, shared by every backend; a backend's :class:`Layout` names its kinds and
layers and catalogues its own module types. A *block* is a
strided view into one parameter that belongs to a single irreps path (and, for
per-element weights, a single element): one instruction of an e3nn ``o3.Linear``, one
(path, element) of the ``skip_tp`` tensor product, one (irrep, correlation order,
element) of a symmetric contraction, one layer of a radial MLP (its last layer split
by the convolution path it weights). All blocks are rotation-invariant scalars, so any
change to them keeps the model E(3)-equivariant.

Dispatch is on the module type (e3nn ``Linear``, ``TensorProduct``, ``FullyConnectedNet``,
and the family's own types through its layout); the parameter name only decides the block
*kind* and *layer*. A parameter held by a module of any other type raises
:class:`UnsupportedLayoutError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ._compat import o3, torch

KINDS = (
    "embedding",
    "radial",
    "linear_up",
    "linear",
    "skip",
    "contraction",
    "product_linear",
    "readout",
    "density",
    "other",
)


@dataclass(frozen=True)
class Layout:
    """How a model family names its weights: the backend's part of the catalogue.

    ``kind_rules``: (regex on the parameter name, kind), first match wins (else "other");
    ``layer``: regex whose group 1 is the interaction layer; ``conv_sibling``: attribute, next
    to a radial MLP, of the tensor product whose path weights it computes; ``known_vectors``:
    regexes of 1-D parameters outside handled modules that are invariant scalars;
    ``handler``: ``(prefix, module, model, kind, layer) -> blocks | None`` for the family's own
    module types (None: not one), ``handled``: those types.
    """

    kind_rules: tuple[tuple[str, str], ...]
    layer: str
    conv_sibling: str
    known_vectors: tuple[str, ...] = ()
    handler: Callable | None = None
    handled: tuple = ()


class UnsupportedLayoutError(ValueError):
    """A parameter whose layout sparseft does not know."""


@dataclass(frozen=True)
class WeightBlock:
    """A strided view into one parameter: one irreps path (and element) of it."""

    param: str
    kind: str
    layer: int | None
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    irrep_in: str | None = None
    irrep_out: str | None = None
    element: int | None = None
    detail: str = ""

    @property
    def name(self) -> str:
        """Unique readable id, e.g. ``interactions.0.skip_tp.weight[0e->0e Z=8]``."""
        return f"{self.param}[{self.detail}]" if self.detail else self.param

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def l(self) -> int | None:  # noqa: E743
        """Angular momentum of the block's output irrep (None when it has none)."""
        ir = self.irrep_out or self.irrep_in
        return None if ir is None else o3.Irrep(ir).l

    @property
    def parity(self) -> str | None:
        """Parity of the block's output irrep: ``"e"``, ``"o"`` or None."""
        ir = self.irrep_out or self.irrep_in
        return None if ir is None else ir[-1]

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        """(rows, cols) when the block is a matrix, else None."""
        return (self.shape[0], self.shape[1]) if len(self.shape) == 2 else None

    def indices(self) -> torch.Tensor:
        """Flat indices of the block's entries in its parameter, row-major in ``shape``."""
        index = torch.tensor(self.offset, dtype=torch.long)  # built by broadcasting: cost ~ block size only
        for size, stride in zip(self.shape, self.stride):
            index = index.unsqueeze(-1) + torch.arange(size, dtype=torch.long) * stride
        return index.reshape(-1)


def _kind(name: str, layout: Layout) -> str:
    for pattern, kind in layout.kind_rules:
        if re.search(pattern, name):
            return kind
    return "other"


def _layer(name: str, layout: Layout) -> int | None:
    m = re.match(layout.layer, name)
    return int(m.group(1)) if m else None


def _elements(model) -> list[int]:
    return [int(z) for z in model.atomic_numbers]


def _is_element_irreps(irreps: o3.Irreps, model) -> bool:
    n = len(_elements(model))
    return len(irreps) == 1 and irreps[0].ir == o3.Irrep("0e") and irreps[0].mul == n and n > 1


def _linear_blocks(prefix, mod, model, kind, layer, per_element):
    """One block per instruction of an e3nn ``o3.Linear`` (rows split by element for embeddings)."""
    out = []
    offset = 0
    name = prefix + "weight"
    zs = _elements(model)
    for ins in mod.instructions:
        mul_in, mul_out = ins.path_shape
        ir_in = str(mod.irreps_in[ins.i_in].ir)
        ir_out = str(mod.irreps_out[ins.i_out].ir)
        if per_element and mul_in == len(zs):
            for e, z in enumerate(zs):
                out.append(
                    WeightBlock(
                        name,
                        kind,
                        layer,
                        offset + e * mul_out,
                        (mul_out,),
                        (1,),
                        ir_in,
                        ir_out,
                        z,
                        f"{ir_in}->{ir_out} Z={z}",
                    )
                )
        else:
            out.append(
                WeightBlock(
                    name,
                    kind,
                    layer,
                    offset,
                    (mul_in, mul_out),
                    (mul_out, 1),
                    ir_in,
                    ir_out,
                    None,
                    f"{ir_in}->{ir_out}#{ins.i_in}.{ins.i_out}",
                )
            )
        offset += mul_in * mul_out
    if isinstance(getattr(mod, "bias", None), torch.nn.Parameter) and mod.bias.numel() > 0:
        out.append(WeightBlock(prefix + "bias", kind, layer, 0, (mod.bias.numel(),), (1,), None, "0e", None, "bias"))
    return out


def _tensor_product_blocks(prefix, mod, model, kind, layer):
    """Blocks of an e3nn ``TensorProduct`` with internal weights; per element when input 2 is the one-hot."""
    if not isinstance(getattr(mod, "weight", None), torch.nn.Parameter):
        return []  # weights come from elsewhere (the convolution's radial MLP)
    out = []
    offset = 0
    name = prefix + "weight"
    zs = _elements(model)
    element_input = _is_element_irreps(mod.irreps_in2, model)
    for ins in mod.instructions:
        if not ins.has_weight:
            continue
        shape = tuple(ins.path_shape)
        ir1 = str(mod.irreps_in1[ins.i_in1].ir)
        ir2 = str(mod.irreps_in2[ins.i_in2].ir)
        ir_out = str(mod.irreps_out[ins.i_out].ir)
        size = 1
        for s in shape:
            size *= s
        if ins.connection_mode == "uvw" and element_input:
            u, v, w = shape
            for e, z in enumerate(zs):
                out.append(
                    WeightBlock(
                        name,
                        kind,
                        layer,
                        offset + e * w,
                        (u, w),
                        (v * w, 1),
                        ir1,
                        ir_out,
                        z,
                        f"{ir1}x{ir2}->{ir_out} Z={z}",
                    )
                )
        else:
            out.append(
                WeightBlock(
                    name,
                    kind,
                    layer,
                    offset,
                    shape,
                    contiguous_stride(shape),
                    ir1,
                    ir_out,
                    None,
                    f"{ir1}x{ir2}->{ir_out}#{ins.i_in1}.{ins.i_in2}.{ins.i_out}",
                )
            )
        offset += size
    return out


def contiguous_stride(shape):
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return tuple(reversed(stride))


def conv_paths(model, prefix, layout: Layout):
    """(irrep_in, irrep_out, width) of each weighted path of the tensor product next to the
    radial MLP at ``prefix`` (``layout.conv_sibling``), if any."""
    owner = model.get_submodule(prefix.rsplit(".", 2)[0]) if prefix.count(".") >= 2 else None
    conv = getattr(owner, layout.conv_sibling, None)
    if conv is None or getattr(conv, "internal_weights", True):
        return None
    paths = []
    for ins in conv.instructions:
        if ins.has_weight:
            width = 1
            for s in ins.path_shape:
                width *= s
            paths.append(
                (
                    f"{conv.irreps_in1[ins.i_in1].ir}x{conv.irreps_in2[ins.i_in2].ir}",
                    str(conv.irreps_out[ins.i_out].ir),
                    width,
                )
            )
    return paths


def radial_matrix_blocks(name, kind, layer, n_in, n_out, out_major, paths, label):
    """Blocks of one radial-MLP weight matrix; the last layer split by convolution path."""
    if paths is None or sum(p[2] for p in paths) != n_out:
        if out_major:
            return [WeightBlock(name, kind, layer, 0, (n_out, n_in), (n_in, 1), detail=label)]
        return [WeightBlock(name, kind, layer, 0, (n_in, n_out), (n_out, 1), detail=label)]
    out, start = [], 0
    for i, (ir_in, ir_out, width) in enumerate(paths):
        detail = f"{label} path {ir_in}->{ir_out}#{i}"
        if out_major:
            out.append(
                WeightBlock(name, kind, layer, start * n_in, (width, n_in), (n_in, 1), ir_in, ir_out, None, detail)
            )
        else:
            out.append(WeightBlock(name, kind, layer, start, (n_in, width), (n_out, 1), ir_in, ir_out, None, detail))
        start += width
    return out


def _fcnet_blocks(prefix, mod, model, kind, layer, layout: Layout):
    """e3nn ``FullyConnectedNet``: weights ``layerK.weight`` of shape (in, out)."""
    layers = [(n, m) for n, m in mod.named_children() if hasattr(m, "weight")]
    paths = conv_paths(model, prefix, layout) if kind == "radial" else None
    out = []
    for i, (child, m) in enumerate(layers):
        n_in, n_out = m.weight.shape
        last = i == len(layers) - 1
        out += radial_matrix_blocks(
            f"{prefix}{child}.weight", kind, layer, n_in, n_out, False, paths if last else None, child
        )
    return out


def _module_blocks(prefix, mod, model, layout: Layout):
    """Blocks for the parameters a module owns directly; None when the module type is unknown."""
    from e3nn import nn as e3nn_nn

    kind = _kind(prefix, layout)
    layer = _layer(prefix, layout)
    if isinstance(mod, o3.Linear):
        per_element = kind == "embedding" and _is_element_irreps(mod.irreps_in, model)
        return _linear_blocks(prefix, mod, model, kind, layer, per_element)
    if isinstance(mod, o3.TensorProduct):
        return _tensor_product_blocks(prefix, mod, model, kind, layer)
    if isinstance(mod, e3nn_nn.FullyConnectedNet):
        return _fcnet_blocks(prefix, mod, model, kind, layer, layout)
    return layout.handler(prefix, mod, model, kind, layer, layout) if layout.handler else None


def catalogue(model: torch.nn.Module, layout: Layout) -> list[WeightBlock]:
    """Every trainable weight of ``model`` as blocks, each entry covered exactly once: e3nn
    ``Linear``, ``TensorProduct`` and ``FullyConnectedNet`` here, the family's own modules by
    ``layout.handler``. Raises :class:`UnsupportedLayoutError` naming any parameter whose
    layout is unknown."""
    from e3nn import nn as e3nn_nn

    handled = (o3.Linear, o3.TensorProduct, e3nn_nn.FullyConnectedNet, *layout.handled)
    out: list[WeightBlock] = []
    claimed: set[str] = set()
    for prefix, mod in model.named_modules():
        if not isinstance(mod, handled):
            continue
        if any(prefix.startswith(c + ".") for c in claimed):
            continue  # submodules of a handled module (e.g. FullyConnectedNet layers)
        prefix_dot = prefix + "." if prefix else ""
        found = _module_blocks(prefix_dot, mod, model, layout)
        out += found or []
        claimed.add(prefix)
    params = dict(model.named_parameters())
    covered = {b.param for b in out}
    for name, p in params.items():
        if name in covered:
            continue
        if p.dim() == 0 or (p.dim() == 1 and (p.numel() <= 4 or any(re.match(r, name) for r in layout.known_vectors))):
            out.append(
                WeightBlock(
                    name,
                    _kind(name, layout),
                    _layer(name, layout),
                    0,
                    tuple(p.shape),
                    contiguous_stride(p.shape),
                    detail="",
                )
            )
            continue
        raise UnsupportedLayoutError(
            f"parameter {name!r} (shape {tuple(p.shape)}) is held by a module sparseft does not know "
            f"({type(model.get_submodule(name.rsplit('.', 1)[0])).__name__}); cannot catalogue it"
        )
    _check_coverage(out, params)
    return out


def blocks(model: torch.nn.Module) -> list[WeightBlock]:
    """Every trainable weight of ``model`` (any registered family) as blocks."""
    from .core.backend import backend_of

    return backend_of(model).blocks(model)


def _check_coverage(out, params):
    by_param: dict[str, list[torch.Tensor]] = {name: [] for name in params}
    for b in out:
        by_param[b.param].append(b.indices())
    counts = {
        name: torch.bincount(torch.cat(idx), minlength=params[name].numel())
        if idx
        else torch.zeros(params[name].numel())
        for name, idx in by_param.items()
    }
    for name, c in counts.items():
        if c.numel() != params[name].numel() or (c.numel() and (c.min() != 1 or c.max() != 1)):
            raise UnsupportedLayoutError(
                f"parameter {name!r}: sparseft's blocks cover its entries {int(c.min())}..{int(c.max())} times "
                "instead of exactly once; its layout differs from what sparseft expects"
            )


def not_adaptable(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(name, reason) for model quantities that are listed but never adapted."""
    from .core.backend import backend_of

    out = []
    buffers = dict(model.named_buffers())
    for name, reason in backend_of(model).not_adaptable.items():
        if name in buffers:
            out.append((name, reason))
    # a weight with requires_grad=False in the file is still adaptable: adapters add their own
    # parameters to a copy, so it is not listed here
    return out
