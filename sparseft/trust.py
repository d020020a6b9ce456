"""The warning that loading a pickled model file runs code from it (no heavy imports: the
command line filters it before any command runs)."""

from __future__ import annotations


class UntrustedModelWarning(UserWarning):
    """Loading a pickled ``.model`` file runs code from it. Emitted once per file and process;
    for files you trust: ``warnings.filterwarnings("ignore", category=sparseft.UntrustedModelWarning)``."""
