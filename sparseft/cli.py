"""Command line: ``sparseft finetune | inspect | check | tiny-model``. Thin: parsing and printing only."""

from __future__ import annotations

import argparse
import sys

from .loading import TRUST_WARNING


def _load(args):
    from .loading import load_model

    print(f"note: {TRUST_WARNING}", file=sys.stderr)
    return load_model(args.model, dtype=args.dtype, head=args.head)


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
    print(catalogue_table(chosen, total, by=args.group))
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


def cmd_check(args) -> int:
    from .testing.equivariance import check_equivariance

    model = _load(args)
    label = args.model
    if args.adapter:
        from .io import load_adapter

        model = load_adapter(model, args.adapter)
        label += f" + adapter {args.adapter}"
    structures = None
    if args.structures:
        import ase.io

        structures = ase.io.read(args.structures, index=":")
    report = check_equivariance(model, structures, seed=args.seed)
    print(f"equivariance of {label}")
    print(report.format_table())
    return 0 if report.passed else 1


def cmd_finetune(args) -> int:
    from .finetune import Interrupted, run
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, overrides=args.set)
    if recipe.base.model != "embedded":
        print(f"note: {TRUST_WARNING}", file=sys.stderr)
    try:
        run(recipe, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    except Interrupted as exc:
        print(f"sparseft: {exc}", file=sys.stderr)
        return 130
    return 0


def cmd_tiny_model(args) -> int:
    from ._compat import torch
    from .files import write_file_atomically
    from .precision import parse_dtype
    from .testing.tiny import tiny_mace

    hidden = "8x0e" if args.scalar else "8x0e+8x1o"
    model = tiny_mace(hidden_irreps=hidden, dtype=parse_dtype(args.dtype) or torch.float64)
    from pathlib import Path

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    write_file_atomically(out, lambda tmp: torch.save(model, tmp))
    print(f"wrote {out}: tiny ScaleShiftMACE ({hidden}, H and O, random weights) for demos and tests")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparseft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("model", help="mace-torch .model file (a pickle: it runs code, so only use trusted files)")
        p.add_argument("--dtype", choices=["float32", "float64"], default=None, help="convert the model")
        p.add_argument("--head", default=None, help="head of a multi-head model")

    p = sub.add_parser("inspect", help="print the weight catalogue and what a selector resolves to")
    model_args(p)
    p.add_argument("--select", default=None, help="selector, e.g. 'kinds=skip,contraction layers=1 l=0'")
    p.add_argument(
        "--group",
        default="block",
        choices=["block", "kind", "layer", "param", "element"],
        help="one row per block (default) or per group",
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", help="equivariance report; exits 1 when a check fails")
    model_args(p)
    p.add_argument("--adapter", default=None, help="adapter directory to apply first")
    p.add_argument("--structures", default=None, help="extxyz file of structures (default: built-in ones)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("finetune", help="fine-tune a base model as a recipe says")
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
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("tiny-model", help="write a tiny random-weight MACE model (demos, tests)")
    p.add_argument("output")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--scalar", action="store_true", help="scalar-only features (8x0e)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_tiny_model)
    return parser


def main(argv=None) -> int:
    from .data import DataError
    from .io import AdapterFileError
    from .loading import ModelLoadError
    from .recipe import RecipeError
    from .select import SelectionError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ModelLoadError,
        SelectionError,
        AdapterFileError,
        RecipeError,
        DataError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"sparseft: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
