"""The one place sparseft imports ``sevenn``.

sevenn 0.13 refuses to import under e3nn < 0.5 (a version check about e3nn's Clebsch-Gordan
convention). mace-torch 0.3.16 pins e3nn 0.4.4, so both cannot be installed at their declared
versions in one environment. sevenn's checkpoints carry their own Clebsch-Gordan coefficients
(``_w3j_*`` buffers), so the convention check does not apply to a model built from one: with
the check passed, SevenNet-0 energies and forces under e3nn 0.4.4 equal those under e3nn 0.5.9
(tests/backends/test_sevennet_reference.py pins them). Importing sevenn through :func:`sevenn`
passes the check by presenting e3nn's version as 0.5.0 for the duration of the import only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = (
    "the SevenNet backend needs sevenn 0.13 installed without its e3nn pin: "
    "pip install --no-deps sevenn==0.13.0 && pip install 'sparseft[sevennet]'"
)


class SevenNetMissingError(ImportError):
    """sevenn (or one of its run-time dependencies) is not installed."""


def sevenn() -> ModuleType:
    """The ``sevenn`` package, imported once with e3nn's CG-convention check passed."""
    import sys

    if "sevenn" in sys.modules:
        return sys.modules["sevenn"]
    import e3nn

    from ..._compat import torch  # noqa: F401  (mace before e3nn: e3nn 0.4.4 needs it on torch >= 2.6)

    real = e3nn.__version__
    e3nn.__version__ = "0.5.0" if real.startswith("0.4") else real
    try:
        module = importlib.import_module("sevenn")
        for name in ("sevenn.checkpoint", "sevenn.util", "sevenn.train.dataload", "sevenn.model_build"):
            importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise SevenNetMissingError(f"{INSTALL_HINT} (missing module {exc.name!r})") from exc
    finally:
        e3nn.__version__ = real
    return module
