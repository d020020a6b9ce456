"""Every bad input in ``tests/bad_input_corpus.py`` gets one clear error: run in one process.

Per case: the exit code (2 bad input, 1 failed check or run), exactly one ``sparseft: error:``
line naming where (the case's ``expect``), no traceback, and the case's folder exactly as the
setup left it (nothing written, nothing changed: no outputs left behind by a refused run).
Python API cases must raise a ``ValueError`` (every sparseft error class is one) whose message
is one line and names where.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import stat
import subprocess
import warnings

import ase.io
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.cli import main
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from .bad_input_corpus import CASES, MOUNTS, Work, write_recipe
from .finetune_data import emt_frames


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), root / "tiny.model")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5, seed=1), root / "other.model")
    frames = emt_frames(8)
    ase.io.write(root / "data.xyz", frames, format="extxyz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = sf.wrap(sf.load_model(root / "tiny.model"), [sf.SparseConfig(l1=0.1)])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.copy_(torch.randn_like(p) * 0.01 * (torch.rand_like(p) < 0.2))
    sf.save_adapter(adapted, root / "adapter")
    w = Work(
        root, root / "tiny.model", root / "other.model", root / "data.xyz", root / "adapter", root / "finished", frames
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(load_recipe(write_recipe(root, w.recipe(root / "finished"), "finished.yaml")), quiet=True)
    return w


def _snapshot(folder):
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(path.stat().st_mode))
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _restore_permissions(folder):
    while MOUNTS:
        subprocess.run(["umount", str(MOUNTS.pop())], check=True)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)


def _run_cli(argv):
    """(exit code, stderr, escaped exception) of ``sparseft ARGV`` run in this process."""
    err, out = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - what would reach the user as a traceback
            code, escaped = None, exc
    return code, err.getvalue(), escaped


def check_case(case, folder, work) -> None:
    """Run one case and assert everything the corpus promises about it."""
    try:
        target = case.setup(folder, work)
    except PermissionError as exc:
        pytest.skip(str(exc))
    before = _snapshot(folder)
    try:
        if callable(target):  # API cases may make their input files inside the call
            _check_api(case, target)
        else:
            _check_cli(case, target)
            assert _snapshot(folder) == before, "the case's folder changed: outputs were left behind or files edited"
    finally:
        _restore_permissions(folder)


def _check_api(case, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except ValueError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"raised {type(exc).__name__} (not a sparseft error): {exc}") from exc
        else:
            raise AssertionError("silently accepted: no error")
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert re.search(case.expect, message), f"{message!r} does not match {case.expect!r}"


def _check_cli(case, argv):
    code, err, escaped = _run_cli(argv)
    assert escaped is None, f"traceback: {type(escaped).__name__}: {escaped}"
    assert code != 0, "silently accepted: exit 0"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("sparseft: error: ")]
    others = [line for line in err.splitlines() if line and not line.startswith(("sparseft: error: ", "note: "))]
    assert len(errors) == 1 and not others, f"expected one error line, got:\n{err}"
    assert re.search(case.expect, errors[0][len("sparseft: error: ") :]), (
        f"{errors[0]!r} does not match {case.expect!r}"
    )
    assert code == case.code, f"exit code {code}, expected {case.code}: {errors[0]}"


def test_the_corpus_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, work):
    check_case(case, tmp_path, work)
