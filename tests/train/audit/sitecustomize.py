"""Loaded at start-up by every Python process whose PYTHONPATH holds this folder (the
data-parallel tests put it there): when ``SPARSEFT_AUDIT_LOG`` is set, records every file
opened for writing, renamed, created or removed under ``SPARSEFT_AUDIT_WATCH`` (Python audit
events) in ``$SPARSEFT_AUDIT_LOG/rank<RANK>.log``, so a test can see which rank wrote what."""

import os
import sys

_LOG = os.environ.get("SPARSEFT_AUDIT_LOG")
_WATCH = os.environ.get("SPARSEFT_AUDIT_WATCH")
_WRITE_EVENTS = {"os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"}

if _LOG and _WATCH:
    _busy = [False]
    _path = os.path.join(_LOG, f"rank{os.environ.get('RANK', 'none')}.log")

    def _hook(event, args):
        if _busy[0]:
            return
        writing = event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+")
        if not (writing or event in _WRITE_EVENTS) or not args:
            return
        target = os.fspath(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
        if isinstance(target, bytes):
            target = target.decode(errors="replace")
        if not os.path.abspath(target).startswith(_WATCH):
            return
        _busy[0] = True
        try:
            with open(_path, "a") as fh:
                fh.write(f"{event} {target}\n")
        finally:
            _busy[0] = False

    sys.addaudithook(_hook)
