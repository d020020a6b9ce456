"""``sparseft export``: energy heads as plain mace-torch models (no sparseft needed to run them)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub, parents=()) -> None:
    p = sub.add_parser(
        "export",
        parents=list(parents),
        help="write an energy head as a plain single-head MACE model "
        "(or all energy heads as a native mace multi-head model)",
    )
    p.add_argument("model", help="merged_with_heads.model, merged_multihead.model or any multi-head mace model")
    p.add_argument(
        "--head", default=None, metavar="NAME", help="the head to keep (default: every energy head, as mace heads)"
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .core.backend import backend_of
    from .export import export
    from .files import save_torch, write_file_atomically
    from .loading import TRUST_WARNING, load_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    print(f"note: {TRUST_WARNING}", file=sys.stderr)
    model = export(load_model(args.model), args.head)
    backend = backend_of(model)
    if backend.name != "mace":  # the family's own file (sevenn: a checkpoint)
        write_file_atomically(out, lambda tmp: backend.save_merged(model, tmp))
        print(f"wrote {out}: a {backend.name} model of head {args.head}")
        return 0
    write_file_atomically(out, lambda tmp: save_torch(model, tmp))
    heads = list(getattr(model, "heads", ["Default"]))
    print(
        f"wrote {out}: {type(model).__name__}, mace heads {heads}"
        + ("" if len(heads) == 1 else " (pick one with MACECalculator(head=...) or --head)")
    )
    return 0
