"""The optimiser (Adam(W) with per-parameter options) and the EMA of the trainable values."""

from __future__ import annotations

from .._compat import torch


class EMA:
    """Exponential moving average of the trainable parameters (used for evaluation)."""

    def __init__(self, params, decay: float):
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def swap(self):
        """Exchange live and averaged values (call twice to undo)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def make_optimizer(params, config, options: dict | None = None):
    """Adam(W) over ``params`` (AMSGrad with ``config.amsgrad``, mace_run_train's default);
    ``options`` maps some of them to their own group options: ``lr_scale`` (a learning-rate
    factor), ``search_lr_scale`` (a further factor until the support is fixed), ``weight_decay``."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    options = options or {}
    defaults = {"lr_scale": 1.0, "search_lr_scale": 1.0, "weight_decay": config.weight_decay}
    keyed: dict[tuple, list] = {}
    for p in params:
        key = tuple(sorted({**defaults, **options.get(p, {})}.items()))
        keyed.setdefault(key, []).append(p)
    groups = [{"params": ps, **dict(key)} for key, ps in keyed.items()]
    return cls(groups, lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad, foreach=True)
