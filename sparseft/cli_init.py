"""``sparseft init [quickstart|sparse|lora|heads] DIR``: write a commented recipe (shipped in the
package, so it works from a pip install as from a clone)."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = ("quickstart", "sparse", "lora", "heads")


def template_path(name: str) -> Path:
    """The shipped recipe template ``name``."""
    return Path(__file__).resolve().parent / "templates" / f"{name}.yaml"


def add_parser(sub, parents=()) -> None:
    p = sub.add_parser(
        "init",
        parents=list(parents),
        help="write a commented recipe to start from (runs as written on the embedded data)",
    )
    p.add_argument(
        "template",
        nargs="?",
        default="quickstart",
        choices=TEMPLATES,
        help="quickstart (default): the 2-minute demo; sparse, lora: templates; heads: a new energy head",
    )
    p.add_argument("directory", nargs="?", default=".", help="where to write <template>.yaml (created if needed)")
    p.add_argument("--overwrite", action="store_true", help="replace <template>.yaml if it exists")
    p.set_defaults(func=cmd_init)


def cmd_init(args) -> int:
    target = Path(args.directory) / f"{args.template}.yaml"
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(template_path(args.template).read_text())
    print(f"wrote {target}\nnext: sparseft finetune {target}")
    return 0
