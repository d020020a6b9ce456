"""``train.log``: everything a fine-tune prints, with timestamps, in its output directory (as
mace writes its log); and progress lines for runs whose stderr is not a terminal."""

from __future__ import annotations

import time
from pathlib import Path


class TrainLog:
    """A ``log`` callable that passes each message on to ``echo`` (``print``, or nothing with
    ``--quiet``) and appends it as ``YYYY-mm-dd HH:MM:SS message`` lines to ``path``. Lines are
    kept in memory until :meth:`start` (the run's first checkpoint, or a resumed run): a run
    that fails before it leaves no file behind."""

    def __init__(self, path: Path, echo, results=None):
        self.path = Path(path)
        self.echo = echo
        self.results = results or echo  # where :meth:`result` messages go (also with --quiet)
        self._file = None
        self._pending: list[str] = []

    def __call__(self, message: str) -> None:
        self.write(message)
        self.echo(message)

    def result(self, message: str) -> None:
        """A final result: to the file and to ``results``, which ``--quiet`` never silences."""
        self.write(message)
        self.results(message)

    def write(self, message: str) -> None:
        """To the file only."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp} {line}\n" for line in str(message).splitlines() or [""]]
        if self._file is None:
            self._pending += lines
            return
        self._file.writelines(lines)
        self._file.flush()

    def start(self) -> None:
        """Open the file (appending) and write what was logged so far."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
            self._file.writelines(self._pending)
            self._file.flush()
            self._pending = []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressTicker:
    """Calls ``log`` with a progress line at most every ``seconds`` during training (for
    nohup/SLURM runs, where no progress bar shows)."""

    def __init__(self, log, seconds: float, total_steps: int):
        self.log, self.seconds, self.total = log, seconds, total_steps
        self.started = self.last = time.perf_counter()
        self.first_step = None

    def __call__(self, step: int, epoch: int, loss: float) -> None:
        now = time.perf_counter()
        if self.first_step is None:
            self.first_step = step - 1
        if now - self.last < self.seconds:
            return
        self.last = now
        rate = (step - self.first_step) / max(now - self.started, 1e-9)
        left = (self.total - step) / rate if rate > 0 else float("nan")
        self.log(
            f"step {step}/{self.total} (epoch {epoch + 1})  loss {loss:.4g}  {rate:.2f} steps/s  "
            f"~{left / 60:.1f} min left"
        )


class Progress:
    """A count of finished items for long work besides training steps (the final evaluation,
    ``sparseft check``): a tqdm bar when ``file`` (default stderr) is a terminal, else a line
    to ``log`` at most every ``seconds``; nothing with ``quiet``. Use it as a
    context manager and call :meth:`update` per item."""

    def __init__(
        self,
        total: int,
        what: str,
        *,
        unit: str = "",
        log=print,
        seconds: float | None = 60.0,
        quiet: bool = False,
        bar: bool | None = None,
        file=None,
    ):
        import sys

        self.total, self.what, self.unit, self.log, self.seconds = total, what, unit, log, seconds
        self.done = 0
        file = file or sys.stderr
        show_bar = not quiet and (file.isatty() if bar is None else bar)
        self.lines = not quiet and not show_bar and seconds is not None
        self.bar = None
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}" if unit else "it", file=file, leave=False)
        self.started = self.last = time.perf_counter()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.lines and now - self.last >= self.seconds:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            unit = f" {self.unit}" if self.unit else ""
            self.log(
                f"{self.what}: {self.done}/{self.total}{unit}, {now - self.started:.0f} s, ~{left / 60:.1f} min left"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def epoch_summary(row: dict, epochs: int) -> str:
    """The line a trainer logs after each epoch (``row``: one entry of the training history)."""
    scaled = lambda key: row[key] and row[key] * 1000  # noqa: E731
    heads = ""
    for key in row:
        if key.startswith("valid_") and "." in key and row[key] is not None:
            head, _, metric = key[len("valid_") :].partition(".")
            if metric == "forces_mae":
                heads += f"  [{head}] F {scaled(key):.1f} meV/Å"
            elif metric == "energy_per_atom_mae":
                heads += f"  [{head}] E {scaled(key):.2f} meV/atom"
            elif metric == "magmoms_mae":
                heads += f"  [{head}] m {row[key]:.4f} μB"
    return (
        f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4g}  valid {_fmt(row['valid_loss'], '.4g')}  "
        f"E {_fmt(scaled('valid_energy_mae'), '.2f')} meV/atom  F {_fmt(scaled('valid_forces_mae'), '.1f')} meV/Å"
        f"{heads}  density {row['density']:.4f}  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    )
