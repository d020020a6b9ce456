"""Data-set preparation: split files with REF_energy / REF_forces labels, forgetting sets on
the base's original level of theory, and nested training subsets of a task's pool."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .config import REPO
from .util import write_json


@dataclasses.dataclass
class Task:
    name: str
    title: str
    base_model: Path  # the base .model file both tools start from
    base_desc: str
    dtype: str
    target_desc: str
    forget_desc: str
    dir: Path
    pool: Path  # training pool (nested subsets are its first n frames)
    valid: Path
    test: Path
    forget: Path
    n_pool: int
    budget: dict
    extra: dict = dataclasses.field(default_factory=dict)


def _labelled(atoms, energy, forces):
    b = atoms.copy()
    b.calc = None
    for key in ("virial", "energy_xtb", "REF_stress", "REF_virials"):
        b.info.pop(key, None)
    for key in ("forces_xtb", "molID"):
        if key in b.arrays:
            del b.arrays[key]
    b.info["REF_energy"] = float(energy)
    b.arrays["REF_forces"] = np.asarray(forces, dtype=float)
    return b


def _write_xyz(path: Path, frames) -> None:
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.xyz")
    ase.io.write(tmp, frames, format="extxyz")
    os.replace(tmp, path)


def prepare_ecemc(args, budget: dict, work: Path) -> Task:
    import ase.io

    real = Path(args.real_dir)
    model = Path(args.ecemc_model or real / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model")
    data = Path(args.ecemc_data or real / "data" / "mace_tutorial_solvent" / "ECEMC.xyz")
    forget = Path(args.ecemc_forget or real / "data" / "mace_tutorial_solvent" / "solvent_xtb_test.xyz")
    for p in (model, data, forget):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found (set --real-dir or the --ecemc-* paths)")
    d = work / "ecemc"
    files = {k: d / "splits" / f"{k}.xyz" for k in ("pool", "valid", "test", "forget")}
    meta_path = d / "splits" / "meta.json"
    key = {
        "data": str(data),
        "forget": str(forget),
        "budget": {k: budget[k] for k in ("n_valid", "n_test", "n_forget")},
        "seed": args.split_seed,
    }
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("key") != key or not all(f.is_file() for f in files.values()):
        frames = ase.io.read(data, ":")
        isolated = [a for a in frames if len(a) == 1]
        boxes = [_labelled(a, a.get_potential_energy(), a.get_forces()) for a in frames if len(a) > 1]
        order = np.random.default_rng(args.split_seed).permutation(len(boxes))
        boxes = [boxes[i] for i in order]
        nt, nv = budget["n_test"], budget["n_valid"]
        _write_xyz(files["test"], boxes[:nt])
        _write_xyz(files["valid"], boxes[nt : nt + nv])
        _write_xyz(files["pool"], boxes[nt + nv :])
        xtb, pick = _write_xtb_forget(forget, files["forget"], budget["n_forget"], args.split_seed + 1)
        meta = {
            "key": key,
            "isolated_atoms_eV": {a.get_chemical_symbols()[0]: float(a.get_potential_energy()) for a in isolated},
            "n_boxes": len(boxes),
            "n_pool": len(boxes) - nt - nv,
            "atoms_per_box": sorted({len(a) for a in boxes}),
            "elements": sorted({s for a in frames for s in a.get_chemical_symbols()}),
            "n_xtb_frames": len(xtb),
            "forget_atoms": int(sum(len(xtb[i]) for i in pick)),
        }
        write_json(meta_path, meta)
    return Task(
        "ecemc",
        "ECEMC: xTB-trained MACE fine-tuned on EC/EMC liquid (second level of theory)",
        model,
        f"`{model.name}` (ScaleShiftMACE, float64, trained on GFN2-xTB EC/EMC clusters)",
        "float64",
        f"`{data.name}`: {meta['n_boxes']} periodic EC/EMC boxes of {'/'.join(map(str, meta['atoms_per_box']))} atoms "
        f"(elements {' '.join(meta['elements'])}); the {len(meta['isolated_atoms_eV'])} isolated-atom frames are dropped "
        f"(E0s are estimated, see below; their energies: "
        + ", ".join(f"{k} {v:.3f} eV" for k, v in meta["isolated_atoms_eV"].items())
        + ")",
        f"{budget['n_forget']} random frames (seed {args.split_seed + 1}) of `{forget.name}` "
        f"(GFN2-xTB, {meta['n_xtb_frames']} molecular clusters, {meta['forget_atoms']} atoms picked), "
        "keys energy_xtb / forces_xtb",
        d,
        files["pool"],
        files["valid"],
        files["test"],
        files["forget"],
        meta["n_pool"],
        budget,
        {"meta": meta},
    )


def _load_make_foundation():
    path = REPO / "scripts" / "make_foundation.py"
    spec = importlib.util.spec_from_file_location("_bench_make_foundation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_xtb_forget(source, out: Path, n: int, seed: int):
    """The forgetting set: ``n`` random multi-atom frames of the GFN2-xTB file ``source`` with its
    xTB labels, written to ``out``; returns all frames and the chosen indices."""
    import ase.io

    xtb = [a for a in ase.io.read(source, ":") if len(a) > 1]
    pick = np.random.default_rng(seed).choice(len(xtb), size=min(n, len(xtb)), replace=False)
    frames = [_labelled(xtb[i], xtb[i].info["energy_xtb"], xtb[i].arrays["forces_xtb"]) for i in sorted(pick)]
    _write_xyz(out, frames)
    return xtb, pick


def make_emt_structures(n: int, seed: int) -> list:
    """Held-out pretraining-style structures: the foundation's generator and filters, another seed."""
    mf = _load_make_foundation()
    ref = mf.emt_reference()
    out = mf.sample_structures(mf.Generator(seed, ref), n, ref)
    for atoms in out:
        atoms.info.pop("REF_stress", None)
    return out


def prepare_domain(args, budget: dict, work: Path) -> Task:
    import ase.io
    import torch

    from sparseft.embedded import DOMAIN_DIR, load_foundation

    src = Path(args.domain_dir) if args.domain_dir else DOMAIN_DIR
    d = work / "domain"
    files = {k: d / "splits" / f"{k}.xyz" for k in ("pool", "valid", "test", "forget")}
    base_path = d / "base.model"
    meta_path = d / "splits" / "meta.json"
    key = {
        # not the path: every --sparseft-source snapshot has its own copy of the embedded data, and a
        # path in the key made each snapshot rewrite the splits and base.model under the others' runs
        "src": "embedded" if not args.domain_dir else str(src),
        "model": args.domain_model,
        "seed": args.split_seed,
        "forget_seed": args.emt_seed,
        "budget": {k: budget[k] for k in ("n_valid", "n_test", "n_forget")},
    }
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("key") != key or not all(f.is_file() for f in files.values()) or not base_path.is_file():
        if args.domain_model == "embedded":
            base = load_foundation(dtype="float32")
            d.mkdir(parents=True, exist_ok=True)
            torch.save(base, base_path)  # the file both tools start from
        else:
            shutil.copyfile(args.domain_model, base_path)
        train = ase.io.read(src / "train.xyz", ":")
        valid = ase.io.read(src / "valid.xyz", ":")
        test = ase.io.read(src / "test.xyz", ":")
        strip = lambda fs: [_labelled(a, a.info["REF_energy"], a.arrays["REF_forces"]) for a in fs]  # noqa: E731
        order = np.random.default_rng(args.split_seed).permutation(len(train))
        train = [train[i] for i in order]
        if budget["n_valid"]:
            valid = valid[: budget["n_valid"]]
        if budget["n_test"]:
            test = test[: budget["n_test"]]
        _write_xyz(files["pool"], strip(train))
        _write_xyz(files["valid"], strip(valid))
        _write_xyz(files["test"], strip(test))
        t0 = time.perf_counter()
        emt = make_emt_structures(budget["n_forget"], args.emt_seed)
        _write_xyz(files["forget"], emt)
        meta = {
            "key": key,
            "n_pool": len(train),
            "n_valid": len(valid),
            "n_test": len(test),
            "elements": sorted({s for a in train for s in a.get_chemical_symbols()}),
            "forget_atoms": int(sum(len(a) for a in emt)),
            "forget_elements": sorted({s for a in emt for s in a.get_chemical_symbols()}),
            "emt_seconds": round(time.perf_counter() - t0, 1),
        }
        write_json(meta_path, meta)
    return Task(
        "domain",
        "Embedded mini-foundation (EMT) fine-tuned on the quick-start Cu-Au GFN1-xTB set",
        base_path,
        "the embedded mini-foundation (`sparseft/embedded`, ScaleShiftMACE 32x0e+32x1o, float32, "
        "pretrained on EMT labels of Al Ni Cu Pd Ag Pt Au), saved once as a `.model` file for both tools",
        "float32",
        f"quick-start domain set (`{'sparseft/embedded/domain' if src.parts[-3:] == ('sparseft', 'embedded', 'domain') else src}`): Cu-Au fcc alloy cells (31-32 atoms) labelled with GFN1-xTB; "
        f"train pool {meta['n_pool']} (train.xyz, shuffled with seed {args.split_seed}), valid {meta['n_valid']}, "
        f"test {meta['n_test']} (the shipped valid.xyz / test.xyz)",
        f"{budget['n_forget']} held-out EMT structures of {' '.join(meta['forget_elements'])} "
        f"({meta['forget_atoms']} atoms; the generator of scripts/make_foundation.py, seed {args.emt_seed}, "
        "the foundation used seed 0)",
        d,
        files["pool"],
        files["valid"],
        files["test"],
        files["forget"],
        meta["n_pool"],
        budget,
        {"meta": meta},
    )


def _subset(frames: list, n: int | None, seed: int) -> list:
    """``n`` frames picked at random (seeded), in file order; all of them for None."""
    if n is None or n >= len(frames):
        return list(frames)
    pick = np.random.default_rng(seed).choice(len(frames), size=n, replace=False)
    return [frames[i] for i in sorted(pick)]


def prepare_magnetic(args, budget: dict, work: Path) -> Task:
    """Moments of H/C/O radicals for a collinear moment head on the xTB-trained model, xTB replay
    frames for its foundation head, and a fixed random subset of the xTB test set for forgetting.
    The moment and replay files are used in place unless ``n_train`` / ``n_replay`` ask for a subset."""
    import ase.io

    real = Path(args.real_dir)
    model = Path(args.magnetic_model or real / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model")
    src = Path(args.magnetic_dir or REPO / "examples" / "data" / "hco_radicals")
    replay = Path(args.magnetic_replay or real / "data" / "mace_tutorial_solvent" / "solvent_xtb_train_200.xyz")
    forget = Path(args.magnetic_forget or real / "data" / "mace_tutorial_solvent" / "solvent_xtb_test.xyz")
    for p in (model, src / "train.xyz", src / "valid.xyz", src / "test.xyz", replay, forget):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found (set --real-dir or the --magnetic-* paths)")
    d = work / "magnetic"
    files = {
        "train": src / "train.xyz" if budget["n_train"] is None else d / "splits" / f"train_{budget['n_train']}.xyz",
        "replay": replay if budget["n_replay"] is None else d / "splits" / f"replay_{budget['n_replay']}.xyz",
        "forget": d / "splits" / "forget.xyz",
    }
    meta_path = d / "splits" / "meta.json"
    key = {
        "src": str(src),
        "replay": str(replay),
        "forget": str(forget),
        "seed": args.split_seed,
        "budget": {k: budget[k] for k in ("n_train", "n_replay", "n_forget")},
    }
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("key") != key or not all(f.is_file() for f in files.values()):
        train = ase.io.read(src / "train.xyz", ":")
        replay_frames = ase.io.read(replay, ":")
        if budget["n_train"] is not None:
            train = _subset(train, budget["n_train"], args.split_seed)
            _write_xyz(files["train"], train)
        if budget["n_replay"] is not None:
            replay_frames = _subset(replay_frames, budget["n_replay"], args.split_seed)
            _write_xyz(files["replay"], replay_frames)
        xtb = [a for a in ase.io.read(forget, ":") if len(a) > 1]
        pick = sorted(
            np.random.default_rng(args.split_seed + 1).choice(
                len(xtb), size=min(budget["n_forget"], len(xtb)), replace=False
            )
        )
        _write_xyz(
            files["forget"], [_labelled(xtb[i], xtb[i].info["energy_xtb"], xtb[i].arrays["forces_xtb"]) for i in pick]
        )
        valid, test = ase.io.read(src / "valid.xyz", ":"), ase.io.read(src / "test.xyz", ":")
        meta = {
            "key": key,
            "n_train": len(train),
            "n_replay": len(replay_frames),
            "replay_isolated": sum(len(a) == 1 for a in replay_frames),
            "n_valid": len(valid),
            "n_test": len(test),
            "molecules": len({a.info.get("molecule") for a in train}),
            "open_shell": len({a.info.get("molecule") for a in train if a.info.get("REF_total_magmom", 0) > 0}),
            "level_of_theory": train[0].info.get("level_of_theory", "?"),
            "elements": sorted({s for a in train + replay_frames for s in a.get_chemical_symbols()}),
            "n_xtb_frames": len(xtb),
            "forget_atoms": int(sum(len(xtb[i]) for i in pick)),
        }
        write_json(meta_path, meta)
    src_name = str(src.relative_to(REPO)) if src.is_relative_to(REPO) else str(src)
    return Task(
        "magnetic",
        "xTB-trained MACE + a magnetic-moment head on H/C/O radicals (sparseft only)",
        model,
        f"`{model.name}` (ScaleShiftMACE, float64, trained on GFN2-xTB EC/EMC clusters; scalar features "
        "only, so a collinear head)",
        "float64",
        f"`{src_name}`: per-atom spin populations ({meta['level_of_theory']}; `REF_magmoms`, totals "
        f"`REF_total_magmom`) of {meta['molecules']} small H/C/O molecules ({meta['open_shell']} open-shell), "
        f"train {meta['n_train']} / valid {meta['n_valid']} / test {meta['n_test']} (the shipped splits"
        + (
            ")"
            if budget["n_train"] is None
            else f"; training: {meta['n_train']} random frames, seed {args.split_seed})"
        ),
        f"{budget['n_forget']} random frames (seed {args.split_seed + 1}) of `{forget.name}` (GFN2-xTB, "
        f"{meta['n_xtb_frames']} molecular clusters, {meta['forget_atoms']} atoms picked), keys energy_xtb / forces_xtb",
        d,
        files["train"],
        src / "valid.xyz",
        src / "test.xyz",
        files["forget"],
        meta["n_train"],
        budget,
        {"meta": meta, "replay": files["replay"], "replay_source": replay},
    )


def train_file_for(task: Task, n: int, subset_seed: int | None = None) -> Path:
    """The first ``n`` frames of the pool (nested subsets), or with ``subset_seed`` the first ``n``
    of the pool shuffled by that seed (a different subset per seed; seed 0 is the pool's order)."""
    import ase.io

    tag = "" if subset_seed is None else f"_subset{subset_seed}"
    path = task.dir / "splits" / f"train_{n}{tag}.xyz"
    if not path.is_file():
        frames = ase.io.read(task.pool, ":")
        if n > len(frames):
            raise ValueError(f"{task.name}: asked for {n} training frames, the pool has {len(frames)}")
        if subset_seed:
            order = np.random.default_rng(1000 + subset_seed).permutation(len(frames))
            frames = [frames[i] for i in order]
        _write_xyz(path, frames[:n])
    return path


MOLECULES = {  # name -> (folder under data/, train file, test file, extra test files, title, level of theory)
    "aspirin": (
        "rMD17_aspirin",
        "rmd17_aspirin_train.xyz",
        "rmd17_aspirin_test.xyz",
        {},
        "rMD17 aspirin: xTB-trained MACE fine-tuned on PBE/def2-SVP aspirin MD",
        "PBE/def2-SVP (rMD17)",
    ),
    "acac": (
        "BOTNet_acac",
        "train_300K.xyz",
        "test_MD_300K.xyz",
        {"test_600K": "test_MD_600K.xyz"},
        "BOTNet acac: xTB-trained MACE fine-tuned on acetylacetone at 300 K (tested at 300 K and 600 K)",
        "DFT (BOTNet acac, 300 K MD)",
    ),
}


def prepare_molecule(args, budget: dict, work: Path, name: str) -> Task:
    """A molecular data set with the ECEMC xTB model as the base (same elements C H O, another
    level of theory); forgetting on the xTB solvent clusters, as for ecemc."""
    import ase.io

    folder, train_name, test_name, extra_names, title, theory = MOLECULES[name]
    real = Path(args.real_dir)
    model = Path(args.ecemc_model or real / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model")
    source = real / "data" / folder
    forget = Path(args.ecemc_forget or real / "data" / "mace_tutorial_solvent" / "solvent_xtb_test.xyz")
    for p in (model, source / train_name, source / test_name, forget):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found (set --real-dir)")
    d = work / name
    files = {k: d / "splits" / f"{k}.xyz" for k in ("pool", "valid", "test", "forget", *extra_names)}
    meta_path = d / "splits" / "meta.json"
    key = {
        "source": str(source),
        "forget": str(forget),
        "seed": args.split_seed,
        "budget": {k: budget[k] for k in ("n_valid", "n_test", "n_forget", "n_pool")},
    }
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("key") != key or not all(f.is_file() for f in files.values()):
        rng = np.random.default_rng(args.split_seed)
        label = lambda fs: [_labelled(a, a.get_potential_energy(), a.get_forces()) for a in fs]  # noqa: E731
        train = ase.io.read(source / train_name, ":")
        train = [train[i] for i in rng.permutation(len(train))]
        nv = budget["n_valid"]
        _write_xyz(files["valid"], label(train[:nv]))
        _write_xyz(files["pool"], label(train[nv : nv + budget["n_pool"]]))
        for split, file_name in (("test", test_name), *extra_names.items()):
            frames = ase.io.read(source / file_name, ":")
            pick = sorted(rng.choice(len(frames), size=min(budget["n_test"], len(frames)), replace=False))
            _write_xyz(files[split], label([frames[i] for i in pick]))
        _write_xtb_forget(forget, files["forget"], budget["n_forget"], args.split_seed + 1)
        meta = {
            "key": key,
            "n_pool": min(budget["n_pool"], len(train) - nv),
            "atoms": len(train[0]),
            "elements": sorted({s for a in train for s in a.get_chemical_symbols()}),
        }
        write_json(meta_path, meta)
    return Task(
        name,
        title,
        model,
        f"`{model.name}` (ScaleShiftMACE, float64, trained on GFN2-xTB EC/EMC clusters)",
        "float64",
        f"`{folder}/{train_name}` ({theory}): {meta['atoms']}-atom molecule, train pool {meta['n_pool']}, "
        f"valid {budget['n_valid']} (from the training file), test {budget['n_test']} random frames of `{test_name}`"
        + "".join(f", {k} {budget['n_test']} of `{v}`" for k, v in extra_names.items()),
        f"{budget['n_forget']} random frames of `{forget.name}` (GFN2-xTB solvent clusters)",
        d,
        files["pool"],
        files["valid"],
        files["test"],
        files["forget"],
        meta["n_pool"],
        budget,
        {"meta": meta, "tests": {k: str(files[k]) for k in extra_names}},
    )
