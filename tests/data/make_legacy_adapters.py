"""Write adapter directories with the pre-refactor code (tests/data/legacy_adapter*)."""

import os

import sparseft as sf
from sparseft._compat import torch
from sparseft.embedded import load_foundation
from sparseft.heads import build_head

os.chdir(os.path.join(os.path.dirname(__file__), "..", ".."))
base = load_foundation(dtype="float64")
torch.manual_seed(0)
adapted = sf.wrap(
    base,
    [
        sf.SparseConfig(name="s", select=sf.Selector(kinds=["skip"], layers=[0]), l1=0.1),
        sf.LoRAConfig(name="l", select=sf.Selector(kinds=["linear"], layers=[1]), rank=2),
        sf.FreezeConfig(name="f", select=sf.Selector(kinds=["readout"])),
    ],
)
with torch.no_grad():
    for p in adapted.trainable_parameters():
        p.add_(0.01 * torch.randn_like(p))
adapted.proximal_step(0.05)
adapted.fix_support(density=0.05)
e0 = dict(adapted.model.named_buffers())["atomic_energies_fn.atomic_energies"]
adapted.set_buffer("atomic_energies_fn.atomic_energies", e0 + 0.25)
sf.save_adapter(adapted, "tests/data/legacy_adapter", overwrite=True)
adapted.add_head(build_head("dft", "energy", {}, adapted._plain[0]))
adapted.add_head(build_head("spin", "magmom", {"hidden": 4}, adapted._plain[0], seed=1))
adapted.add_head(build_head("vec", "vector_magmom", {"hidden": 4, "channels": 2}, adapted._plain[0], seed=2))
with torch.no_grad():
    for p in adapted.head_parameters():
        p.add_(0.01 * torch.randn_like(p))
sf.save_adapter(adapted, "tests/data/legacy_adapter_heads", overwrite=True)
