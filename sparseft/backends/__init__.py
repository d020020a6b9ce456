"""The model families sparseft adapts: one subpackage each, one line here.

A third family is a subpackage with ``BACKEND`` (a :class:`sparseft.core.backend.Backend`),
this line, and a test module subclassing the contract classes of :mod:`sparseft.testing.contract`.
"""

REGISTRY = {
    "mace": "sparseft.backends.mace",
    "sevennet": "sparseft.backends.sevennet",
}
