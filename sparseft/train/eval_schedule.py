"""Which epochs are validated (``train.eval_interval``, mace_run_train's ``--eval_interval``).

mace validates after epoch index ``epoch % eval_interval == 0`` (0-based: after the 1st, the
``n + 1``-th, ...); sparseft does the same and also validates after the last epoch, so the
final weights can be chosen. Epochs in between are not validated: the learning-rate plateau,
early stopping (``train.patience`` counts validated epochs) and the best-epoch choice only see
validated ones.
"""

from __future__ import annotations


def validates(config, epoch: int, last: bool) -> bool:
    """Whether the ``epoch``-th epoch (1-based, just completed) is validated; ``last``: no epoch follows."""
    return last or (epoch - 1) % config.eval_interval == 0


def describe(config) -> str | None:
    """The log line that says the schedule (None when every epoch is validated)."""
    n = config.eval_interval
    if n == 1:
        return None
    return (
        f"validation every {n} epochs (after epochs 1, {n + 1}, {2 * n + 1}, ..., as mace_run_train "
        f"--eval_interval {n}) and after the last; the lr plateau, early stopping and the best epoch "
        "count validated epochs only"
    )
