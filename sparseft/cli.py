"""Command line: ``sparseft finetune | inspect | check | tiny-model | export | init | convert-mace-args | convert-sevenn-args``. Thin: parsing and printing only."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__  # nothing heavy at import time: --help and usage errors are instant


def _load(args):
    from .loading import TRUST_WARNING, load_base_model

    if args.model != "embedded":
        print(f"note: {TRUST_WARNING}", file=sys.stderr)
    return load_base_model(args.model, dtype=args.dtype, head=args.head)


def cmd_inspect(args) -> int:
    from ase.data import chemical_symbols

    from .blocks import blocks, not_adaptable
    from .inspect_table import catalogue_table
    from .select import Selector

    model = _load(args)
    all_blocks = blocks(model)
    total = sum(b.size for b in all_blocks)
    chosen = all_blocks
    if args.select is not None:
        chosen = Selector.parse(args.select).resolve(all_blocks)
    print(
        f"{args.model}: {type(model).__name__}, {len(all_blocks)} blocks, {total} weights, "
        f"elements {' '.join(chemical_symbols[int(z)] for z in model.atomic_numbers)}"
    )
    by = "block" if args.details else args.group
    print(catalogue_table(chosen, total, by=by))
    if by != "block":
        print("(one row per block: --details)")
    if args.select is not None:
        count = sum(b.size for b in chosen)
        print(
            f"\nselector '{Selector.parse(args.select)}' resolves to {len(chosen)} blocks, "
            f"{count} weights ({100 * count / total:.2f}% of all)"
        )
    fixed = not_adaptable(model)
    if fixed:
        print("\nnot adaptable:")
        for name, reason in fixed:
            print(f"  {name}: {reason}")
    return 0


CHECK_PROGRESS_SECONDS = 30.0  # a progress line this often when stderr is not a terminal


def cmd_check(args) -> int:
    from .testing.equivariance import check_equivariance
    from .testing.structures import default_structures
    from .train_log import Progress

    model = _load(args)
    label = args.model
    if args.adapter:
        from .io import load_adapter

        model = load_adapter(model, args.adapter)
        label += f" + adapter {args.adapter}"
    if args.structures:
        structures, source = _read_structures(args.structures, model), f"from {args.structures}"
    else:
        structures, source = default_structures(model, seed=args.seed), "built in"
    say = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    say(f"checking {len(structures)} structures ({source}) against rotated, translated and permuted copies")
    with Progress(
        len(structures),
        "equivariance check",
        unit="structures",
        log=say,
        seconds=CHECK_PROGRESS_SECONDS,
        quiet=args.quiet,
    ) as progress:
        report = check_equivariance(model, structures, seed=args.seed, on_structure=progress.update)
    print(f"equivariance of {label} on {len(structures)} structures")
    print(report.format_table())
    return 0 if report.passed else 1


def _read_structures(path, model) -> list:
    """Structures for ``check --structures``, refused (file and frame named) when no model can
    evaluate them."""
    from .data import read_frames
    from .geometry import StructureError, check_structure
    from .labels import DataError

    frames = read_frames(path)
    zs = [int(z) for z in model.atomic_numbers]
    for i, atoms in zip(frames.indices, frames.atoms):
        try:
            check_structure(atoms, zs, cutoff=float(model.r_max))
        except StructureError as exc:
            raise DataError(f"{frames.path}: frame {i}: {exc}") from exc
    return frames.atoms


def cmd_finetune(args) -> int:
    from .loading import TRUST_WARNING
    from .recipe import RecipeError, load_recipe
    from .run import Interrupted, run

    if args.resume and args.overwrite:
        raise RecipeError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if args.accept_recipe_changes and not args.resume:
        raise RecipeError("--accept-recipe-changes only applies with --resume")
    flags = [(f"--{k} {v!r}", f"base.{k}={v}") for k, v in (("device", args.device), ("dtype", args.dtype)) if v]
    recipe = load_recipe(args.recipe, overrides=args.set + flags)  # the flags win over --set and the file
    if recipe.base.model != "embedded" and not _other_rank():
        print(f"note: {TRUST_WARNING}", file=sys.stderr)
    try:
        run(
            recipe,
            resume=args.resume,
            overwrite=args.overwrite,
            quiet=args.quiet,
            accept_recipe_changes=args.accept_recipe_changes,
        )
    except Interrupted as exc:  # rank 0 wrote the checkpoint and says so
        if not _other_rank():
            print(f"sparseft: {exc}", file=sys.stderr)
        return 130
    return 0


def _other_rank() -> bool:
    """A torchrun rank other than 0: notes and the Ctrl-C line come from rank 0 alone (errors
    from every rank)."""
    return os.environ.get("RANK", "0") != "0"


def cmd_tiny_model(args) -> int:
    from pathlib import Path

    from ._compat import torch
    from .files import check_writable, save_torch, write_file_atomically
    from .precision import parse_dtype
    from .testing.tiny import foundation_like, tiny_mace

    dtype = parse_dtype(args.dtype) or torch.float64
    out = Path(args.output)
    if out.is_dir():
        raise IsADirectoryError(f"tiny-model: {out} is a directory; give a file name such as {out / 'tiny.model'}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"tiny-model: the directory {out.parent} does not exist")
    check_writable(out.parent, "tiny-model")
    if args.like:
        model = foundation_like(args.like, dtype=dtype)
        what = f"randomly initialised ScaleShiftMACE with {args.like}'s architecture"
    else:
        hidden = "8x0e" if args.scalar else "8x0e+8x1o"
        model = tiny_mace(hidden_irreps=hidden, dtype=dtype)
        what = f"tiny ScaleShiftMACE ({hidden}, H and O, random weights)"
    write_file_atomically(out, lambda tmp: save_torch(model, tmp))
    print(f"wrote {out}: {what} ({sum(p.numel() for p in model.parameters())} weights) for demos and tests")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error"
    )
    parser = _Parser(
        prog="sparseft",
        description="Parameter-efficient fine-tuning of MACE and SevenNet interatomic potentials. "
        "Run 'sparseft COMMAND --help' for a command's options.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"sparseft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_args(p):
        p.add_argument(
            "model",
            help="a model file, mace-torch .model or sevenn .pth (a pickle: it runs code, so only use "
            "trusted files), or a shipped name: 'embedded' (the mini MACE foundation), 'sevennet:7net-0', ...",
        )
        p.add_argument(
            "--dtype", choices=["float32", "float64"], default=None, help="convert the model to this precision"
        )
        p.add_argument("--head", default=None, metavar="NAME", help="head of a multi-head model")

    p = sub.add_parser("inspect", parents=[common], help="print the weight catalogue and what a selector resolves to")
    model_args(p)
    p.add_argument(
        "--select", default=None, metavar="SELECTOR", help="selector, e.g. 'kinds=skip,contraction layers=1 l=0'"
    )
    p.add_argument(
        "--group",
        default="kind",
        choices=["block", "kind", "layer", "param", "element"],
        help="one row per group (default: per kind) or per block",
    )
    p.add_argument("--details", action="store_true", help="one row per block (same as --group block)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", parents=[common], help="equivariance report; exits 1 when a check fails")
    model_args(p)
    p.add_argument("--adapter", default=None, metavar="DIR", help="adapter directory to apply first")
    p.add_argument(
        "--structures", default=None, metavar="FILE", help="extxyz file of structures (default: built-in ones)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random rotations (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines (the report is printed)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("finetune", parents=[common], help="fine-tune a base model as a recipe says")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe value, e.g. --set train.lr=1e-3 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    p.add_argument(
        "--accept-recipe-changes",
        action="store_true",
        help="with --resume: continue although the recipe differs from the saved one (the "
        "differences are recorded in recipe_changes.json)",
    )
    p.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="shortcut for --set base.device=DEVICE (auto, cpu or cuda)",
    )
    p.add_argument(
        "--dtype", default=None, metavar="DTYPE", help="shortcut for --set base.dtype=DTYPE (float32 or float64)"
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars, per-epoch or progress lines; the final results are still printed",
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("tiny-model", parents=[common], help="write a tiny random-weight MACE model (demos, tests)")
    p.add_argument("output", metavar="FILE", help="the .model file to write")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="precision (default float64)")
    p.add_argument("--scalar", action="store_true", help="scalar-only features (8x0e)")
    p.add_argument(
        "--like",
        default=None,
        metavar="ARCH",
        help="a foundation model's architecture instead (mp0-medium: 128x0e+128x1o, max_ell 3, "
        "correlation 3, 89 elements, 4.7M weights), random weights",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_tiny_model)

    from . import cli_export, cli_init, convert_sevenn
    from .backends.mace import convert as convert_mace

    for command in (cli_export, cli_init, convert_mace, convert_sevenn):
        command.add_parser(sub, parents=[common])
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line ``sparseft: error: ...`` form (exit 2)."""

    def error(self, message):
        raise SystemExit(_report(f"{message} (see {self.prog} --help)", 2))


def _report(message: str, code: int) -> int:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    print(f"sparseft: error: {'; '.join(lines) or 'unknown error'}", file=sys.stderr)
    return code


def exit_code_and_message(exc: BaseException) -> tuple[int, str]:
    """How the command line reports an exception: 2 for bad input (every sparseft input error
    is a ``ValueError``; files that exist, are missing, or are not writable), 1 for a run or check
    that failed (training diverged, disk full, anything unexpected)."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = exc.filename or "the output directory"
        return 1, f"no space left on device while writing {where}; the last complete checkpoint is kept"
    if isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        message = str(exc)
    if isinstance(
        exc, (ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
    ):
        return 2, message
    if isinstance(exc, OSError):
        return 1, message
    if isinstance(exc, FloatingPointError):
        return 1, str(exc)
    return 1, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"


def main(argv=None) -> int:
    """Run one command; every exception ends as one ``sparseft: error: ...`` line (with
    ``--debug``: the traceback too) and exit code 2 (bad input) or 1 (a failed run or check)."""
    import warnings

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # before any heavy import
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from .trust import UntrustedModelWarning  # not .loading: init and usage errors need no torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UntrustedModelWarning)  # the commands print their own note
            return args.func(args)
    except KeyboardInterrupt:
        if not _other_rank():
            print("sparseft: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place where errors become messages
        if getattr(args, "debug", False):  # before or after the command name
            import traceback

            traceback.print_exc()
        code, message = exit_code_and_message(exc)
        return _report(message, code)


if __name__ == "__main__":
    sys.exit(main())
