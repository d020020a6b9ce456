"""The embedded mini-foundation MACE model.

A small ``ScaleShiftMACE`` (hidden irreps 32x0e+32x1o, max_ell 2, r_max 4.5 Å,
2 interactions, correlation 3, float32) trained with mace-torch's ``mace_run_train``
on structures labelled with ASE's EMT calculator for Al, Ni, Cu, Pd, Ag, Pt and Au.
EMT is a semi-empirical effective-medium potential, not DFT: the model is a realistic,
offline stand-in for a foundation model, not a physically accurate one.
``PROVENANCE.md`` next to this file says how it was made; ``scripts/make_foundation.py``
rebuilds it.

The model is stored without pickle: ``foundation.safetensors`` holds the state dict and
``foundation.json`` the constructor arguments (JSON-encoded) plus metadata (training
data, test metrics, sha256 of the weights file). :func:`load_foundation` rebuilds the
module with mace-torch's own classes.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

from .._compat import default_dtype, torch  # noqa: F401  (import order: mace before e3nn)
from ..backends.mace.precision import to_dtype
from ..files import sha256_file
from ..precision import parse_dtype

__all__ = ["DOMAIN_DIR", "FOUNDATION_CONFIG", "FOUNDATION_WEIGHTS", "foundation_info", "load_foundation"]

_HERE = Path(__file__).resolve().parent
FOUNDATION_WEIGHTS = _HERE / "foundation.safetensors"
FOUNDATION_CONFIG = _HERE / "foundation.json"
DOMAIN_DIR = _HERE / "domain"  # quick-start data (Cu-Au, GFN1-xTB): recipes refer to it as embedded:NAME

FORMAT = "sparseft-foundation/1"


def _decode(value):
    """Inverse of the encoding used by ``scripts/make_foundation.py`` (tagged JSON objects)."""
    import mace.modules
    import numpy as np
    from e3nn import o3

    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__irreps__" in value:
        return o3.Irreps(value["__irreps__"])
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value.get("dtype", "float64"))
    if "__gate__" in value:
        name = value["__gate__"]
        if name not in mace.modules.gate_dict:
            raise ValueError(f"unknown gate {name!r}")
        return mace.modules.gate_dict[name]
    if "__class__" in value:
        qualname = value["__class__"]
        module_name, _, cls_name = qualname.rpartition(".")
        if not (module_name == "mace" or module_name.startswith("mace.")):
            raise ValueError(f"refusing to import {qualname!r}: only mace classes are allowed")
        return getattr(importlib.import_module(module_name), cls_name)
    return {k: _decode(v) for k, v in value.items()}


def foundation_info(config=None) -> dict:
    """The JSON metadata of the embedded model (constructor arguments, data, test metrics)."""
    with open(config or FOUNDATION_CONFIG, encoding="utf-8") as fh:
        return json.load(fh)


def _build(config, weights, dtype=None, device="cpu") -> torch.nn.Module:
    """Rebuild the model described by ``config`` (JSON) with the tensors in ``weights``."""
    import mace.modules
    from safetensors.torch import load_file

    info = foundation_info(config)
    if info.get("format") != FORMAT:
        raise ValueError(f"{config}: not a {FORMAT} file (format={info.get('format')!r})")
    expected = info.get("weights_sha256")
    actual = sha256_file(weights)
    if expected != actual:
        raise ValueError(f"{weights}: sha256 {actual} does not match {expected} recorded in {config}")

    cls_name = info["model_class"]
    if cls_name not in ("ScaleShiftMACE", "MACE"):
        raise ValueError(f"{config}: unsupported model class {cls_name!r}")
    cls = getattr(mace.modules, cls_name)
    kwargs = _decode(copy.deepcopy(info["model_kwargs"]))

    build_dtype = getattr(torch, info.get("dtype", "float32"))
    with default_dtype(build_dtype):
        model = cls(**kwargs)
    state = load_file(str(weights), device="cpu")
    model.load_state_dict(state, strict=True)
    target = parse_dtype(dtype)
    if target is not None and target != build_dtype:
        model = to_dtype(model, target)
    model = model.to(device)
    model.eval()
    return model


def load_foundation(dtype=None, device="cpu") -> torch.nn.Module:
    """The embedded mini-foundation model as a plain mace-torch ``ScaleShiftMACE``.

    Rebuilt from ``foundation.json`` + ``foundation.safetensors`` (no pickle); the sha256
    of the weights file is checked against the one recorded in the JSON. ``dtype``
    (None, "float32", "float64" or a torch dtype) converts it; it was trained in float32.
    The module is returned in eval mode, like :func:`sparseft.load_model` returns one.
    """
    return _build(FOUNDATION_CONFIG, FOUNDATION_WEIGHTS, dtype=dtype, device=device)
