"""Foundation-size ergonomics: load/save times, adapter file sizes and peak memory on a randomly
initialised model with MACE-MP-0-medium's architecture (``sparseft tiny-model --like mp0-medium``).

    python benchmarks/foundation_size.py [--like mp0-medium] [--device cpu|cuda] [--no-memory] [--methods TEXT]

Measures, in one process (one torch thread): ``load_model`` (float32 file) and the float32 ->
float64 rebuild; for each adapter method ``save_adapter``, ``load_adapter`` (after a warm-up, i.e.
excluding TorchScript's first-call cost) and the file size relative to the base's weight bytes;
then, in one fresh process per method, the peak resident memory and time of a training step
(forward + forces + backward + Adam) on a 32-atom Cu/Au cell, and the optimiser-state size
(the sparse methods also with their fixed support compacted, as training does). Writes ``benchmarks/results/foundation_size.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from machine import cpu_model, installed_versions, usable_cores  # noqa: E402  (benchmarks/machine.py)

import sparseft as sf  # noqa: E402
from sparseft._compat import torch  # noqa: E402

OUTPUT = Path(__file__).parent / "results" / "foundation_size.md"
CU_AU = (29, 79)
METHODS = {  # name -> (adapter configs, restrict to the Cu/Au training elements)
    "sparse 3% (all elements)": ([sf.SparseConfig()], False),
    "sparse 3% of reachable (Cu/Au data)": ([sf.SparseConfig()], True),
    "LoRA r=4 (Cu/Au data)": ([sf.LoRAConfig(rank=4)], True),
    "full fine-tuning (Cu/Au data)": ([sf.FreezeConfig()], True),
    "full fine-tuning (all elements)": ([sf.FreezeConfig()], False),
}
COMPACTED = ", support compacted"  # step rows only: the fixed support compacted (what training does)
STEP_METHODS = [*METHODS, *(m + COMPACTED for m in METHODS if m.startswith("sparse"))]


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Median CPU time (this process, one torch thread: robust on a shared machine) of
    ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), result


def adapted_for(base, method: str, seed: int = 0):
    configs, restrict = METHODS[method.removesuffix(COMPACTED)]
    adapted = sf.wrap(base, configs, train_elements=CU_AU if restrict else None)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.copy_(0.01 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    if adapted.prunable_parts():
        adapted.fix_support(density=0.03)
    if method.endswith(COMPACTED):
        adapted.compact_supports()
    return adapted


def file_rows(base, device: str, methods: str = "") -> list[str]:
    weight_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sf.predict(base, [_cell()])  # warm-up: TorchScript's first call is not load_adapter's cost
        for method in [m for m in METHODS if methods in m]:
            adapted = adapted_for(base, method)
            directory = Path(tmp) / method.replace(" ", "_").replace("/", "")
            t_save, _ = timed(lambda a=adapted, d=directory: sf.save_adapter(a, d, overwrite=True))
            t_load, _ = timed(lambda d=directory: sf.load_adapter(base, d))
            size = sum(f.stat().st_size for f in directory.iterdir())
            d = adapted.density()
            rows.append(
                f"| {method} | {adapted.num_trainable():,} | {d['changed']:,} | {t_save:.2f} | {t_load:.2f} | "
                f"{size / 1e6:.2f} MB | {100 * size / weight_bytes:.2f}% |"
            )
            print(rows[-1], flush=True)
    return rows


def _cell():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::5] = "Au"
    atoms.rattle(0.05, seed=0)
    return atoms


def step_in_fresh_process(like: str, method: str | None, device: str) -> dict:
    """Peak memory and step time of one method, measured in its own process."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
import foundation_size as fs
print(json.dumps(fs.one_step({like!r}, {method!r}, {device!r})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_step(like: str, method: str | None, device: str) -> dict:
    """Two training steps (the second timed) of ``method`` (None: the plain base, all weights)."""
    from sparseft.predict import atoms_to_batch
    from sparseft.testing.tiny import foundation_like

    base = foundation_like(like).to(device)
    if method is None:
        model = base
        params = [p.requires_grad_(True) for p in base.parameters()]
    else:
        model = adapted_for(base, method)
        params = model.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=1e-4)
    batch = atoms_to_batch([_cell()], base)
    rss_before = _rss_mb("VmRSS")
    _reset_peak_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    clock = time.perf_counter if device.startswith("cuda") else time.process_time  # GPU work: wall clock
    for _ in range(2):
        t0 = clock()
        out = model(dict(batch), training=True, compute_force=True)
        loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(clock() - t0)
    state_bytes = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.dim()
    )
    fixed = [t for p in model.prunable_parts() for t in (p.mask, p.support) if t is not None] if method else []
    delta_bytes = sum(t.numel() * t.element_size() for t in [*params, *fixed]) if method else 0
    peak = torch.cuda.max_memory_allocated() / 1e6 if device.startswith("cuda") else _rss_mb("VmHWM") - rss_before
    return {
        "step_s": times[-1],
        "peak_mb": peak,
        "trainable": sum(p.numel() for p in params),
        "optimizer_state_mb": state_bytes / 1e6,
        "delta_mb": delta_bytes / 1e6,  # adapter parameters + fixed masks or compacted support positions
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _rss_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now; VmHWM: peak since the last reset), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--like", default="mp0-medium")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--no-memory", action="store_true", help="skip the per-method training-step processes")
    p.add_argument("--output", default=str(OUTPUT))
    p.add_argument("--methods", default="", help="only the methods whose name contains this text")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from sparseft.testing.tiny import foundation_like

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    t_build, model = timed(lambda: foundation_like(args.like), repeats=1)
    n_weights = sum(p.numel() for p in model.parameters())
    lines = [
        f"# Foundation-size ergonomics ({args.like})",
        "",
        f"Run of {started}: `python benchmarks/foundation_size.py {' '.join(argv or sys.argv[1:])}`",
        "",
        f"- machine: {cpu_model()}, {usable_cores()} usable cores, one torch thread; device {args.device}; "
        f"load average {load_before[0]:.1f} at the start (a shared machine, busy with other jobs)",
        f"- {', '.join(f'{k} {v}' for k, v in installed_versions(('torch', 'mace-torch', 'e3nn')).items())}",
        f"- model: `sparseft tiny-model --like {args.like}` (random weights, float32): {n_weights:,} weights, "
        f"{len(sf.blocks(model)):,} blocks; built in {t_build:.1f} s",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base.model"
        torch.save(model, path)
        t_load, base = timed(lambda: sf.load_model(path, device=args.device))
        t_f64, _ = timed(lambda: sf.load_model(path, dtype="float64", device=args.device), repeats=2)
    lines += [
        "| step | CPU seconds (median) |",
        "|---|---|",
        f"| `load_model` (float32 file) | {t_load:.2f} |",
        f'| `load_model(dtype="float64")` (float32 file, rebuilt in float64) | {t_f64:.2f} |',
        f"| of which the float32 -> float64 rebuild | {t_f64 - t_load:.2f} |",
        "",
    ]
    lines += [
        "Adapters (random deltas; sparse: support fixed at 3% of its selected weights):",
        "",
        "| method | trainable | changed | `save_adapter` CPU s | `load_adapter` CPU s | file | of base weight bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += file_rows(base, args.device, args.methods)
    if not args.no_memory:
        lines += [
            "",
            "Training steps on a 32-atom Cu/Au cell (float32), one fresh process per method; peak MB: "
            + (
                "peak CUDA memory allocated during the steps"
                if args.device == "cuda"
                else "rise of the peak resident memory over the resident memory before the steps (model, adapter and "
                "batch built)"
            )
            + "; process MB: the whole process's peak RSS:",
            "",
            "| method | trainable | step CPU s | peak MB | process MB | Adam state MB | delta + mask/support MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for method in [None] * (not args.methods) + [m for m in STEP_METHODS if args.methods in m]:
            r = step_in_fresh_process(args.like, method, args.device)
            lines.append(
                f"| {method or 'plain base model (every weight)'} | {r['trainable']:,} | {r['step_s']:.2f} | "
                f"{r['peak_mb']:.0f} | {r['process_peak_mb']:.0f} | {r['optimizer_state_mb']:.1f} | "
                f"{r['delta_mb']:.1f} |"
            )
            print(lines[-1], flush=True)
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f}."]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
