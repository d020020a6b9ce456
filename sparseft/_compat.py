"""Import order and version facts, in one place.

e3nn 0.4.4 (pinned by mace-torch) calls ``torch.load`` on its own constants at import
time and fails on torch >= 2.6 unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set, which
importing ``mace`` does for the whole process. Every sparseft module that needs e3nn or
mace imports them from here, so the order is always right.

Because that variable disables safe unpickling process-wide, sparseft's own files
(adapters, checkpoints) are JSON + safetensors and never need pickle.
"""

from __future__ import annotations

import contextlib
import io
import warnings

warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
warnings.filterwarnings("ignore", category=UserWarning, module=r"e3nn\..*")
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.jit\..*")

with contextlib.redirect_stdout(io.StringIO()):  # mace prints a note about cuequivariance
    import mace  # noqa: E402  (must precede e3nn)
    import mace.modules  # noqa: E402
    from e3nn import o3  # noqa: E402
import torch  # noqa: E402

__all__ = ["default_dtype", "mace", "o3", "torch", "package_versions"]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Temporarily set torch's default dtype (mace builds modules and data in it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def package_versions() -> dict[str, str]:
    """Versions of the packages an adapter file depends on."""
    import importlib.metadata as md

    out = {}
    for name in ("sparseft", "torch", "mace-torch", "e3nn", "ase", "numpy", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out
