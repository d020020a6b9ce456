"""The import rule of the backend seam, and a third backend added as one subpackage + one line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparseft
from sparseft.core import backend as core

ROOT = Path(sparseft.__file__).parent
# Core files that still import mace-torch directly (moving them into backends/mace is open work;
# this list may only shrink). _compat imports mace first for e3nn 0.4.4's sake.
LEGACY_MACE = {
    "_compat.py",
    "elements.py",
    "embedded/__init__.py",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_only_a_backend_imports_its_model_library():
    offenders = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        found = _imports(path)
        if "sevenn" in found and not rel.startswith("backends/sevennet/"):
            offenders[rel] = "sevenn"
        if "mace" in found and not rel.startswith("backends/mace/") and rel not in LEGACY_MACE:
            offenders[rel] = "mace"
    assert not offenders, offenders
    for path in (ROOT / "backends/sevennet").rglob("*.py"):
        if "sevenn" in _imports(path):  # after _import.sevenn(), the one place its e3nn check is passed
            assert "sevenn()" in path.read_text(), path


def test_legacy_list_holds_only_files_that_still_need_it():
    stale = [rel for rel in LEGACY_MACE if "mace" not in _imports(ROOT / rel)]
    assert not stale, f"remove from LEGACY_MACE: {stale}"


class _FakeBackend(core.Backend):
    name = "fake"
    accepted = "a fake: name"

    def accepts(self, name):
        return name.startswith("fake:")

    def shipped_names(self):
        return ["fake:one"]

    def load(self, name, *, dtype=None, device="cpu", head=None):
        return _FakeModel()

    def owns(self, model):
        return isinstance(model, _FakeModel)


class _FakeModel:
    pass


def test_a_third_backend_is_one_registry_line(monkeypatch):
    registry = dict(core.registry())
    registry["fake"] = _FakeBackend()
    monkeypatch.setattr(core, "registry", lambda: registry)
    assert isinstance(sparseft.load_model("fake:one"), _FakeModel)
    assert core.backend_of(_FakeModel()).name == "fake"
    with pytest.raises(sparseft.loading.ModelLoadError, match="fake:one"):
        sparseft.load_model("medium")


def test_moved_modules_keep_their_public_names():
    """``sparseft.testing.tiny`` re-exports every public name of ``backends/mace/tiny`` (the
    benchmarks import ``LIKE`` and ``foundation_like`` from it)."""
    import sparseft.backends.mace.tiny as moved
    import sparseft.testing.tiny as old

    public = {n for n in vars(moved) if not n.startswith("_") and n.isidentifier()}
    public -= {"annotations", "np", "torch", "mace", "o3", "default_dtype"}
    assert public <= set(old.__all__), sorted(public - set(old.__all__))
