"""Write a recipe converted from another program's training input, with what was not mapped."""

from __future__ import annotations


def emit_recipe(header: str, recipe: dict, notes: list[str], output, *, allow_unicode: bool = False) -> int:
    """Write a converted recipe (``header``, one comment line per note, the YAML) to ``output``
    or stdout; the notes also go to stderr. Returns the exit code 0."""
    import sys
    from pathlib import Path

    import yaml

    text = (
        header
        + "".join(f"# not mapped: {n}\n" for n in notes)
        + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=allow_unicode)
    )
    if output:
        Path(output).write_text(text)
        print(f"wrote {output}")
    else:
        print(text, end="")
    for note in notes:
        print(f"not mapped: {note}", file=sys.stderr)
    return 0
