"""Adapter directories: ``sparseft.json`` + ``adapter.safetensors``; no pickle anywhere.

``sparseft.json`` holds the format version, package versions, adapter configs, the
base model's fingerprint, the sha256 of the tensor file, the training elements an adapter was
restricted to (``train_elements``) and one reference prediction of the adapted model on a small
canonical cluster of (at most four of) the elements whose per-element weights the adapter
changes most (cheap on an 89-element base). Tensors are keyed
``<adapter>/<parameter name>/<tensor>`` (sparse: ``index_gaps`` or ``indices`` + ``values``; LoRA:
``<block>.A``/``<block>.B``; freeze: ``values``); extra heads are listed under ``heads``
in ``sparseft.json`` (name, kind, architecture options) with their full state under
``heads/<name>/<tensor>``; added elements (:mod:`sparseft.elements`) under ``elements`` (added
elements, initialisation, extended table) with their starting rows under ``elements/<block>``.
Loading checks the fingerprint (always the original base's), the
file hash and the reference prediction, so an edited or truncated file is an error,
never a silently different model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._compat import package_versions, torch
from .adapters import config_from_dict
from .elements import ElementSpec, apply_spec, new_element_rows, set_new_element_rows
from .files import sha256_file, write_directory_atomically, write_file_atomically  # noqa: F401  (old import path)
from .fingerprint import REFERENCE_ELEMENTS, canonical_structure, differences, fingerprint, spread_elements
from .heads import HeadedModel, HeadError, build_head, split_heads
from .model import ELEMENT_ADAPTER, AdaptedModel, wrap_extended
from .predict import model_dtype, predict

FORMAT = "sparseft-adapter"
FORMAT_VERSION = 1
META_FILE = "sparseft.json"
TENSOR_FILE = "adapter.safetensors"
BUFFER_PREFIX = "buffers/"  # E0s a fine-tune changed
HEAD_PREFIX = "heads/"
ELEMENT_PREFIX = "elements/"  # the added elements' starting rows (sparseft.elements.new_element_rows)


class AdapterFileError(ValueError):
    """An adapter directory that is missing, damaged, or made for another base model."""


def reference_elements(adapted: AdaptedModel, count: int = REFERENCE_ELEMENTS) -> list[int]:
    """Elements of the reference structure: the ``count`` elements with the most changed
    per-element entries (ties: lower Z first), filled up with elements spread over the table.
    Changes outside per-element blocks act on every structure; the tensor-file hash covers the rest."""
    changed: dict[int, int] = {}
    with torch.no_grad():
        for _, _, part in adapted.all_parts():
            nz = part.values().detach() != 0
            for block, start, stop in part.block_slices():
                if block.element is not None:
                    changed[block.element] = changed.get(block.element, 0) + int(nz[start:stop].sum())
    chosen = [z for z, n in sorted(changed.items(), key=lambda item: (-item[1], item[0])) if n > 0][:count]
    for z in spread_elements(adapted.model, count):
        if len(chosen) < count and z not in chosen:
            chosen.append(z)
    return sorted(chosen)


def _reference(model, elements: list[int] | None) -> dict:
    """Prediction on the canonical structure of ``elements`` (None: every element, format of
    files written before the element list was recorded)."""
    pred = predict(model, [canonical_structure(model, elements)])[0]
    heads = {
        name: {k: (v if isinstance(v, float) else v.tolist()) for k, v in values.items() if k in ("energy", "magmoms")}
        for name, values in pred.heads.items()
    }
    out = {
        "energy": pred.energy,
        "forces": [] if pred.forces is None else pred.forces.tolist(),
        "heads": heads,
        "dtype": str(model_dtype(model)).replace("torch.", ""),
    }
    if elements is not None:
        out["elements"] = list(elements)
    return out


def adapter_tensors(model: AdaptedModel | HeadedModel) -> dict[str, torch.Tensor]:
    """All adapter tensors keyed ``<adapter>/<param>/<tensor>``, changed buffers and heads."""
    adapted, heads = split_heads(model)
    out = {}
    for adapter, param, part in adapted.all_parts():
        for key, t in part.state_tensors().items():
            out[f"{adapter}/{param}/{key}"] = t.contiguous()
    for name, value in adapted.changed_buffers().items():
        out[f"{BUFFER_PREFIX}{name}"] = value.cpu().contiguous()
    for name, head in heads.items():
        for key, value in head.state_dict().items():
            out[f"{HEAD_PREFIX}{name}/{key}"] = value.detach().cpu().contiguous()
    if adapted.elements is not None:
        for key, value in new_element_rows(adapted.base, adapted.elements.added).items():
            out[f"{ELEMENT_PREFIX}{key}"] = value.cpu().contiguous()
    return out


def _elements_meta(adapted: AdaptedModel) -> dict | None:
    """What an extension of the element table needs to be re-created (None: no extension)."""
    if adapted.elements is None:
        return None
    return {**adapted.elements.to_dict(), "z_table": [int(z) for z in adapted.atomic_numbers]}


def save_adapter(
    model: AdaptedModel | HeadedModel, directory: str | Path, *, overwrite: bool = False, extra: dict | None = None
) -> Path:
    """Write the adapter of ``model`` (an adapted model, or one with heads around an adapted
    trunk) to ``directory`` (atomically)."""
    adapted, heads = split_heads(model)
    if not isinstance(adapted, AdaptedModel):
        raise TypeError(f"save_adapter needs an adapted model (sparseft.wrap), not a {type(adapted).__name__}")
    tensors = adapter_tensors(model)

    def write(tmp: Path):
        save_file(tensors, str(tmp / TENSOR_FILE))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": package_versions(),
            "adapters": [c.to_dict() for c in adapted.configs],
            "heads": [head.spec() for head in heads.values()],
            "elements": _elements_meta(adapted),
            "base": adapted.base_fingerprint,
            "tensors_sha256": sha256_file(tmp / TENSOR_FILE),
            "train_elements": None if adapted.train_elements is None else list(adapted.train_elements),
            "reference": _reference(model, reference_elements(adapted)),
            "density": {k: v for k, v in adapted.density().items() if k != "blocks"},
            "extra": extra or {},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))

    return write_directory_atomically(Path(directory), write, overwrite=overwrite)


def read_metadata(directory) -> dict:
    """Parse and validate ``sparseft.json`` (format, version, required keys)."""
    path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise AdapterFileError(f"{directory}: not an adapter directory (no such directory)")
    if not path.is_file():
        raise AdapterFileError(f"{path}: missing; {directory} is not a sparseft adapter directory")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterFileError(f"{path}: not valid JSON ({exc}); the file is damaged") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterFileError(
            f"{path}: not a sparseft adapter file (format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise AdapterFileError(
            f"{path}: format version {meta.get('format_version')} is not supported (this sparseft reads {FORMAT_VERSION})"
        )
    for key, kind in (("adapters", list), ("base", dict), ("tensors_sha256", str), ("reference", dict)):
        if key not in meta:
            raise AdapterFileError(f"{path}: required key {key!r} is missing; the file is damaged")
        if not isinstance(meta[key], kind):
            raise AdapterFileError(
                f"{path}: {key}: expected a {kind.__name__}, got {_json_name(meta[key])}; the file is damaged"
            )
    if not isinstance(meta.get("heads") or [], list):
        raise AdapterFileError(f"{path}: heads: expected a list, got {_json_name(meta['heads'])}; the file is damaged")
    _check_reference_values(meta["reference"], path)
    return meta


def _json_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _check_reference_values(reference: dict, path: Path) -> None:
    """The stored reference prediction must be finite numbers of the right shapes."""
    energy = reference.get("energy")
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not np.isfinite(energy):
        raise AdapterFileError(
            f"{path}: reference.energy: expected a finite number, got {energy!r}; the file is damaged"
        )
    try:
        forces = np.asarray(reference.get("forces"), dtype=float)
    except (TypeError, ValueError):
        forces = None
    if forces is None or forces.ndim != 2 or forces.shape[1] != 3 or not np.all(np.isfinite(forces)):
        raise AdapterFileError(
            f"{path}: reference.forces: expected an (atoms, 3) list of finite numbers; the file is damaged"
        )
    if not isinstance(reference.get("heads") or {}, dict):
        raise AdapterFileError(f"{path}: reference.heads: expected a mapping; the file is damaged")


def _read_tensors(directory: Path, meta: dict) -> dict[str, torch.Tensor]:
    path = directory / TENSOR_FILE
    if not path.is_file():
        raise AdapterFileError(f"{path}: missing")
    if sha256_file(path) != meta["tensors_sha256"]:
        raise AdapterFileError(
            f"{path}: content does not match the sha256 recorded in {META_FILE}; the file was truncated or edited"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterFileError(f"{path}: unreadable safetensors file ({exc})") from exc
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AdapterFileError(f"{path}: tensor {key} holds NaN or inf values; the file is damaged")
    return tensors


def load_adapter(
    base_model: torch.nn.Module, directory: str | Path, *, check_reference: bool = True
) -> AdaptedModel | HeadedModel:
    """Re-create the adapted model from ``base_model`` and an adapter directory (a
    :class:`~sparseft.heads.HeadedModel` around it when the directory holds heads).

    Refuses a base model whose fingerprint differs from the one the adapter was made
    for, with a message saying what differs.
    """
    directory = Path(directory)
    meta = read_metadata(directory)
    problems = differences(meta["base"], fingerprint(base_model))
    if problems:
        raise AdapterFileError(f"{directory}: this adapter was made for another base model: " + "; ".join(problems))
    tensors = _read_tensors(directory, meta)
    try:
        configs = [config_from_dict(c, f"{META_FILE}: adapters[{i}]") for i, c in enumerate(meta["adapters"])]
        extended, spec, used = _extended_base(base_model, meta.get("elements"), tensors, directory)
        configs = [c for c in configs if spec is None or c.name != ELEMENT_ADAPTER]  # wrap re-adds it
        adapted = wrap_extended(
            extended,
            configs,
            fingerprint(base_model),
            spec,
            copy_model=spec is None,
            allow_empty=bool(meta.get("heads")) or spec is not None,
            train_elements=_train_elements(meta, extended, directory),
        )
    except ValueError as exc:
        raise AdapterFileError(f"{directory}: adapter configs cannot be applied: {exc}") from exc
    model: AdaptedModel | HeadedModel = adapted
    if meta.get("heads"):
        headed = HeadedModel(adapted)
        used |= _load_heads(headed, meta["heads"], tensors, directory)
        model = headed
    for adapter, param, part in adapted.all_parts():
        prefix = f"{adapter}/{param}/"
        mine = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        used.update(prefix + k for k in mine)
        try:
            part.load_state_tensors(mine, f"{directory / TENSOR_FILE}: {prefix}")
        except ValueError as exc:
            raise AdapterFileError(str(exc)) from exc
    for key, value in tensors.items():
        if key.startswith(BUFFER_PREFIX):
            try:
                adapted.set_buffer(key[len(BUFFER_PREFIX) :], value)
            except (ValueError, KeyError) as exc:
                raise AdapterFileError(f"{directory / TENSOR_FILE}: {key}: {exc}") from exc
            used.add(key)
    unused = sorted(set(tensors) - used)
    if unused:
        raise AdapterFileError(f"{directory / TENSOR_FILE}: tensors {unused[:3]} belong to no adapter in {META_FILE}")
    if check_reference:
        _check_reference(model, meta["reference"], directory)
    return model


def _extended_base(base_model, elements: dict | None, tensors: dict, directory: Path):
    """(model, spec, tensor keys used): the base re-extended as recorded, with the stored starting rows."""
    if not elements:
        return base_model, None, set()
    where = f"{directory / META_FILE}: elements"
    try:
        spec = ElementSpec.from_dict(elements)
        model: Any = apply_spec(base_model, spec)  # a mace model
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterFileError(f"{where}: cannot re-create the element extension ({exc})") from exc
    if [int(z) for z in model.atomic_numbers] != list(elements.get("z_table", [])):
        raise AdapterFileError(
            f"{where}: the re-created element table {model.atomic_numbers.tolist()} is not the "
            f"stored {elements.get('z_table')}"
        )
    rows = {k[len(ELEMENT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ELEMENT_PREFIX)}
    set_new_element_rows(model, rows, str(directory / TENSOR_FILE))
    return model, spec, {ELEMENT_PREFIX + k for k in rows}


def _load_heads(headed: HeadedModel, specs: list, tensors: dict, directory: Path) -> set:
    """Rebuild each head from its spec and load its tensors; returns the tensor keys used."""
    used: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"{directory / META_FILE}: heads[{i}]"
        if not isinstance(spec, dict) or not {"name", "kind", "options"} <= set(spec):
            raise AdapterFileError(f"{where}: expected name, kind and options; the file is damaged")
        try:
            head = build_head(spec["name"], spec["kind"], spec["options"], headed.base)
        except HeadError as exc:
            raise AdapterFileError(f"{where}: {exc}") from exc
        prefix = f"{HEAD_PREFIX}{spec['name']}/"
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = head.state_dict()
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise AdapterFileError(
                f"{directory / TENSOR_FILE}: head {spec['name']!r}: missing tensors {missing[:3]}, "
                f"unexpected {extra[:3]}"
            )
        for key, value in state.items():
            if value.shape != expected[key].shape:
                raise AdapterFileError(
                    f"{directory / TENSOR_FILE}: {prefix}{key} has shape {tuple(value.shape)}, "
                    f"expected {tuple(expected[key].shape)}"
                )
        head.load_state_dict({k: v.to(expected[k]) for k, v in state.items()})
        headed.add_head(head)
        used.update(prefix + k for k in state)
    return used


def _train_elements(meta: dict, model, directory: Path) -> list[int] | None:
    """The training elements an adapter was restricted to (``None``: every element)."""
    elements = meta.get("train_elements")
    known = {int(z) for z in model.atomic_numbers}
    if elements is not None and (
        not isinstance(elements, list) or not all(isinstance(z, int) and z in known for z in elements)
    ):
        raise AdapterFileError(
            f"{directory / META_FILE}: 'train_elements' {elements!r} is not a list of the base model's "
            "atomic numbers; the file is damaged"
        )
    return elements


def _check_reference(model: torch.nn.Module, reference: dict, directory: Path) -> None:
    elements = reference.get("elements")
    known = {int(z) for z in torch.as_tensor(model.atomic_numbers).tolist()}
    if elements is not None and (
        not isinstance(elements, list) or not elements or not all(isinstance(z, int) and z in known for z in elements)
    ):
        raise AdapterFileError(
            f"{directory / META_FILE}: reference.elements {elements!r} is not a list of the base "
            "model's atomic numbers; the file is damaged"
        )
    got = _reference(model, elements)
    loose = reference.get("dtype") != "float64" or got["dtype"] != "float64"
    rtol = 1e-4 if loose else 1e-8
    e_ref, e_got = float(reference["energy"]), got["energy"]
    f_ref, f_got = np.asarray(reference["forces"]), np.asarray(got["forces"])
    scale_e = max(abs(e_ref), 1.0)
    scale_f = max(float(np.abs(f_ref).max()) if f_ref.size else 0.0, 1.0)
    close = (
        f_ref.shape == f_got.shape
        and abs(e_ref - e_got) <= rtol * scale_e
        and bool(np.all(np.abs(f_ref - f_got) <= rtol * scale_f))  # NaN compares false: not close
    )
    if not close:
        raise AdapterFileError(
            f"{directory}: the loaded adapter does not reproduce the reference prediction stored in {META_FILE} "
            f"(energy {e_got:.8g} vs {e_ref:.8g}); the files were edited or are inconsistent"
        )
    for name, values in (reference.get("heads") or {}).items():
        for key, want in values.items():
            have = np.asarray(got["heads"].get(name, {}).get(key, np.nan))
            want = np.asarray(want)
            scale = max(float(np.abs(want).max()) if want.size else 0.0, 1.0)
            if have.shape != want.shape or not np.all(np.abs(have - want) <= rtol * scale):
                raise AdapterFileError(
                    f"{directory}: head {name!r} does not reproduce its reference {key} stored in "
                    f"{META_FILE}; the files were edited or are inconsistent"
                )
