"""Write a recipe converted from another program's training input, with what was not mapped."""

from __future__ import annotations


def emit_recipe(
    header: str, recipe: dict, notes: list[str], output, *, source: str, allow_unicode: bool = False
) -> int:
    """Check a converted recipe (a recipe error becomes a "needs editing" note: the user still
    gets the file), then write it (``header``, one comment line per note, the YAML) to ``output``
    or stdout; the notes also go to stderr. ``source``: the command, for the recipe check's
    messages. Returns the exit code 0."""
    import sys
    from pathlib import Path

    import yaml

    from .recipe import RecipeError, recipe_from_dict

    try:
        recipe_from_dict(recipe, source=source)
    except RecipeError as exc:
        notes = [*notes, f"the recipe needs editing: {exc}"]

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
