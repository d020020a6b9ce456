"""``python -m sparseft ...`` (what ``torchrun -m sparseft finetune recipe.yaml`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
