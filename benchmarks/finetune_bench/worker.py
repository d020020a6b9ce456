"""The child process of one sparseft fine-tune (``run.py _worker SPEC``): reads the spec
(recipe + threads) written by the parent, sets the torch threads, runs the recipe."""

from __future__ import annotations

import json
from pathlib import Path


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    import sparseft
    from sparseft.recipe import recipe_from_dict
    from sparseft.run import run

    print(
        f"[worker] sparseft from {Path(sparseft.__file__).parent}; torch threads {torch.get_num_threads()}", flush=True
    )
    recipe = recipe_from_dict(spec["recipe"])
    run(recipe, overwrite=True, log=lambda msg: print(msg, flush=True))
    print("[worker] done", flush=True)
    return 0
