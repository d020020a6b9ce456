"""The training loop: optimiser, schedules, proximal sparsity steps, support fixing, EMA,
clipping, early stopping; resumable from a :class:`TrainState` at any step."""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from dataclasses import asdict, dataclass, field

from .._compat import torch
from ..adapters.sparse_modes import OptimizerView, SparseSchedule
from ..core.graph import collate, loader, to_device
from ..heads import HeadedModel, split_heads
from ..model import AdaptedModel
from . import distributed as ddp
from . import eval_schedule, stage_two
from .losses import ErrorAccumulator, loss_sums, loss_terms, normalised, total_loss


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry (JSON-friendly)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps taken
    step_in_epoch: int = 0  # steps of the current, unfinished epoch (after Ctrl-C)
    epoch_sums: dict = field(default_factory=dict)  # running loss sums of the unfinished epoch
    support_fixed: bool = False
    best_valid: float = math.inf
    best_epoch: int = -1
    zero_shot: dict = field(default_factory=dict)  # the untouched model's validation MAEs (the guard)
    best_guarded: bool = False  # the best epoch is no worse than zero-shot on every guarded MAE
    bad_epochs: int = 0
    plateau_lr_scale: float = 1.0
    plateau_best: float = math.inf
    plateau_bad: int = 0
    history: list = field(default_factory=list)
    done: bool = False
    interrupted: bool = False
    stage_two_epoch: int | None = None  # epoch index where stage two (train.swa) started; None: not (yet)
    stage_two_step: int | None = None  # the step it started at

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("best_valid", "plateau_best"):
            out[key] = None if math.isinf(out[key]) else out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        data = dict(data)
        for key in ("best_valid", "plateau_best"):
            data[key] = math.inf if data.get(key) is None else data[key]
        return cls(**data)


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


class Trainer:
    """Fits an :class:`AdaptedModel` (or a :class:`~sparseft.heads.HeadedModel` around one) on mace
    ``AtomicData`` lists with a ``TrainSection`` config.

    With ``dist`` (a :class:`~sparseft.train.distributed.Distributed`), this process is one rank
    of a data-parallel run: it computes its share of every global batch through DDP, and
    validation runs on rank 0 and is broadcast (see :mod:`sparseft.train.distributed`)."""

    def __init__(
        self,
        model: AdaptedModel | HeadedModel,
        train_data: list,
        valid_data: list,
        config,
        *,
        device: str | torch.device,
        compute_stress: bool,
        log=print,
        progress: bool = False,
        task_weights: dict | None = None,
        derivative_heads: list | None = None,
        frame_names: list[str] | None = None,
        progress_seconds: float | None = None,
        dist: ddp.Distributed | None = None,
        compact_support: bool = True,
    ):
        self.model = model
        self.adapted: AdaptedModel = split_heads(model)[0]  # the adapter side: after-step hooks, supports, E0s
        self._heads_kwargs = {"derivative_heads": derivative_heads} if self.adapted is not model else {}
        self.train_data = train_data
        self.valid_data = valid_data
        if config.lr is None:  # API use without a recipe: the adapters' default rate
            from ..adapters import default_lr

            config = dataclasses.replace(config, lr=default_lr(self.adapted.configs))
        self.config = config
        self.device = device
        self.compute_stress = compute_stress
        self.derivative_heads = derivative_heads  # energy heads whose forces/stress train (None: all)
        self.log = log
        self.frame_names = frame_names  # names of the training frames (by ``source_frame``), for messages
        self.progress = progress
        self.weights = (
            dict(task_weights)
            if task_weights is not None
            else {
                "energy": config.energy_weight,
                "forces": config.forces_weight,
                "stress": config.stress_weight if compute_stress else 0.0,
            }
        )
        self.stage_one_weights = self.weights
        self.steps_per_epoch = max(1, math.ceil(len(train_data) / config.batch_size))
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        stage_two.check_budget(config, self.steps_per_epoch, self.total_steps)
        self.sparse = SparseSchedule(self.adapted, self.total_steps, config.target_density, config.retrain_fraction)
        self.fixed_up_front = self._prepare_sparse()
        self.fix_at_step = None if self.fixed_up_front else self.sparse.fix_at_step
        self.params = model.trainable_parameters()
        self.dist = dist
        self.compact_support = compact_support  # once fixed, sparse parameters hold only their support
        # after any up-front compaction (a support chosen before training): DDP registers the final parameters
        self.forward_model = ddp.wrap_ddp(model, device) if dist else model
        self.optimizer = make_optimizer(self.params, config, self._param_options())
        self.ema = EMA(self.params, config.ema_decay) if config.ema_decay else None
        self.best_params: list[torch.Tensor] | None = None
        self._stop_requested = False
        self.ticker = None  # periodic progress lines (no progress bar: stderr is not a terminal)
        if progress_seconds:
            from ..train_log import ProgressTicker

            self.ticker = ProgressTicker(log, progress_seconds, self.total_steps)

    def _prepare_sparse(self) -> bool:
        """The sparse modes' preparation (a support chosen before training, an initialisation),
        with the first structures of epoch 0's order when a mode asks for them."""
        if not self.sparse.active:
            return False
        frames = min(len(self.train_data), self.sparse.frames_needed())
        batches: list[dict] = []
        seed = self.config.seed * 100_003
        for batch in loader(self.train_data, self.config.batch_size, shuffle=True, seed=seed) if frames else ():
            if sum(int(b["ptr"].numel() - 1) for b in batches) >= frames:
                break
            batches.append(to_device(batch, self.device))

        def forward_loss(batch):
            out = self.model(
                batch, training=True, compute_force=True, compute_stress=self.compute_stress, **self._heads_kwargs
            )
            return total_loss(loss_terms(batch, out), self.weights)

        self.model.train()
        used = sum(int(b["ptr"].numel() - 1) for b in batches)
        return self.sparse.prepare(batches, forward_loss, used, self.log, seed=self.config.seed)

    def _param_options(self) -> dict:
        """Optimiser options the sparse modes set for some parameters (e.g. thresholds' own rate)."""
        return self.sparse.param_options()

    def density_met(self, state: TrainState) -> bool:
        """Whether the current weights meet the target density (the support is fixed, or no target)."""
        no_target = self.config.target_density is None or not self.sparse.constrains_density()
        return no_target or state.support_fixed or self.fixed_up_front

    # --- schedules
    def lr_at(self, step: int, state: TrainState) -> float:
        c = self.config
        if state.stage_two_step is not None and step >= state.stage_two_step:
            return c.swa_lr
        warm = c.warmup_epochs * self.steps_per_epoch
        if warm and step < warm:
            return c.lr * (step + 1) / warm
        if c.scheduler == "cosine":
            start, stop = warm, self.total_steps
            if self.fix_at_step is not None and self.sparse.restarts_schedule:  # retraining's own cycle
                start, stop = (start, self.fix_at_step) if step < self.fix_at_step else (self.fix_at_step, stop)
            progress = (step - start) / max(1, stop - start)
            return c.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        if c.scheduler == "plateau":
            return c.lr * state.plateau_lr_scale
        return c.lr

    def l1_factor(self, step: int) -> float:
        if self.config.l1_schedule == "warmup":
            ramp = max(1, (self.fix_at_step or self.total_steps) // 2)
            return min(1.0, (step + 1) / ramp)
        return 1.0

    def weights_at(self, step: int) -> dict:
        """Loss weights of one step: fixed, or (``loss_weighting: random``) the fixed weights times
        ``K * softmax(z)``, ``z ~ N(0, 1)`` per task (random loss weighting, Lin et al. 2022), drawn
        from a generator seeded by (seed, step) so resumed runs draw the same weights."""
        if getattr(self.config, "loss_weighting", "fixed") != "random":
            return self.weights
        active = [name for name, w in self.weights.items() if w > 0]
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        factors = torch.softmax(torch.randn(len(active), generator=generator, dtype=torch.float64), 0) * len(active)
        return {**self.weights, **{name: self.weights[name] * float(f) for name, f in zip(active, factors)}}

    # --- evaluation
    def evaluate(self, dataset) -> dict:
        """Loss and MAE/RMSE on a dataset (with EMA weights when enabled); in a data-parallel
        run rank 0 evaluates and every rank receives its result."""
        if self.dist is None:
            return self._evaluate(dataset)
        return ddp.broadcast_from_main(self.dist, self._evaluate(dataset) if self.dist.is_main else None)

    def _evaluate(self, dataset) -> dict:
        if not dataset:
            return {}
        if self.ema:
            self.ema.swap()
        acc = ErrorAccumulator()
        loss_sum = 0.0
        n = 0
        try:
            for batch in loader(dataset, self.config.batch_size, shuffle=False):
                batch = to_device(batch, self.device)
                out = self.model(batch, training=False, compute_force=True, compute_stress=self.compute_stress)
                terms = loss_terms(batch, out)
                loss_sum += float(total_loss(terms, self.weights).detach()) * int(batch["ptr"].numel() - 1)
                n += int(batch["ptr"].numel() - 1)
                acc.add(batch, out)
        finally:
            if self.ema:
                self.ema.swap()
        return {"loss": loss_sum / max(n, 1), **acc.metrics()}

    # --- training
    def request_stop(self, *_):
        self._stop_requested = True

    def fit(self, state: TrainState | None = None, on_epoch_end=None, on_interrupt=None) -> TrainState:
        """Train until the epoch/step budget, early stopping, or Ctrl-C (then ``on_interrupt(state)``)."""
        state = state or TrainState()
        self._enter_stage(state)
        if eval_schedule.describe(self.config):
            self.log(eval_schedule.describe(self.config))
        if self.config.zero_shot_guard and self.valid_data and state.epoch == 0 and not state.zero_shot:
            self.model.eval()  # still the base: every delta is zero before the first step
            valid = self.evaluate(self.valid_data)
            state.zero_shot = {k: v for k, v in valid.items() if k.rpartition(".")[2] in GUARDED and v is not None}
        try:
            previous = signal.signal(signal.SIGINT, self.request_stop)
        except ValueError:  # not the main thread: Ctrl-C is not ours to handle
            previous = None
        try:
            while not state.done:
                self._run_epoch(state)
                if state.interrupted:
                    if on_interrupt:
                        on_interrupt(state)
                    return state
                if on_epoch_end:
                    on_epoch_end(state)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return state

    def _enter_stage(self, state: TrainState) -> None:
        """At an epoch boundary, start stage two when it is due; the loss weights follow the state."""
        second = stage_two.weights(self.config, self.stage_one_weights) if self.config.swa else None
        if second is not None and state.step_in_epoch == 0 and stage_two.due(self.config, state):
            stage_two.start(state, self.config, self.log, second)
            self.best_params = None  # the result is a stage-two epoch (mace's _swa checkpoint)
        self.weights = second if second is not None and state.stage_two_step is not None else self.stage_one_weights

    def _maybe_fix_support(self, state: TrainState):
        if self.fixed_up_front and not state.support_fixed:
            state.support_fixed = True
        if self.fix_at_step is not None and not state.support_fixed and state.step >= self.fix_at_step:
            kept = self.sparse.fix(OptimizerView(self.optimizer))
            if self.dist:  # identical inputs give identical masks; rank 0's settle any tie broken by noise
                parts = [p for p in self.adapted.prunable_parts() if p.mask is not None]
                ddp.broadcast_tensors(self.dist, [p.mask for p in parts] + [p.delta.data for p in parts])
            state.support_fixed = True
            if self.compact_support:
                self.compact()
            if not self.sparse.keeps_optimizer_state:
                self.optimizer.state.clear()
            self.log(f"step {state.step}: support fixed at density {self.config.target_density} ({kept} entries kept)")
            if self.ema:
                self.ema = EMA(self.params, self.config.ema_decay)

    @torch.no_grad()
    def compact(self, supports: dict[int, torch.Tensor] | None = None) -> None:
        """Compact the fixed supports (:meth:`AdaptedModel.compact_supports`, ``supports`` from a
        checkpoint): sparse parameters, gradients and Adam moments then cover only the support.
        The optimiser is rebuilt with the surviving entries' moments, the EMA shadow and best
        values follow, and DDP is wrapped around the new parameters."""
        moved = self.adapted.compact_supports(supports)
        if not moved:
            return
        old_params, old_state = self.params, self.optimizer.state
        self.params = self.model.trainable_parameters()  # str's thresholds no longer train
        trains = {id(p) for p in self.params}
        kept = [(i, old, *moved.get(old, (old, None))) for i, old in enumerate(old_params)]
        kept = [(i, old, new, positions) for i, old, new, positions in kept if id(new) in trains]
        assert [id(new) for _, _, new, _ in kept] == [id(p) for p in self.params], "the order must stay"
        self.optimizer = make_optimizer(self.params, self.config, self._param_options())
        for _, old, new, positions in kept:
            if old in old_state and (new is old or positions is not None):
                self.optimizer.state[new] = {k: _kept(v, old, new, positions) for k, v in old_state[old].items()}
        if self.ema:
            shadow = [_kept(self.ema.shadow[i], old, new, positions) for i, old, new, positions in kept]
            self.ema = EMA(self.params, self.config.ema_decay)
            self.ema.shadow = shadow
        if self.best_params is not None:
            self.best_params = [_kept(self.best_params[i], old, new, positions) for i, old, new, positions in kept]
        if self.dist:  # DDP registers parameters once: wrap the new ones (every rank compacts here)
            self.forward_model = ddp.wrap_ddp(self.model, self.device)

    def _run_epoch(self, state: TrainState):
        from tqdm import tqdm

        start = time.perf_counter()
        self._enter_stage(state)
        epoch = state.epoch
        batches = ddp.global_batches(
            len(self.train_data), self.config.batch_size, shuffle=True, seed=self.config.seed * 100_003 + epoch
        )
        main = self.dist is None or self.dist.is_main
        sums = dict(state.epoch_sums) or {"loss": 0.0, "frames": 0}
        # the loss sum stays on the device (no sync per step); the resumed part counts once, on rank 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device) + (float(sums["loss"]) if main else 0.0)
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {epoch + 1}",
            disable=not self.progress,
            leave=False,
        )
        self.model.train()
        for i, indices in enumerate(batches):
            if i < state.step_in_epoch:
                continue  # resumed mid-epoch: these batches were already used
            if self.config.max_steps and state.step >= self.config.max_steps:
                break
            self._maybe_fix_support(state)
            loss = self._step(self._local_batch(indices), state)
            loss_sum += loss * len(indices)
            sums["frames"] += len(indices)
            state.step_in_epoch = i + 1
            bar.update(1)
            if self.progress:  # reading the value is a device sync: only for progress output
                bar.set_postfix(loss=f"{float(loss):.4g}")
            if self.ticker:
                self.ticker(state.step, epoch, float(loss))
            stop = ddp.any_rank(self.dist, self._stop_requested) if self.dist else self._stop_requested
            if stop:
                state.epoch_sums = {**sums, "loss": self._global_sum(loss_sum)}
                state.interrupted = True
                bar.close()
                return
        bar.close()
        sums["loss"] = self._global_sum(loss_sum)
        if not math.isfinite(sums["loss"]):
            raise FloatingPointError(
                f"epoch {epoch + 1}: the training loss is {sums['loss']}; lower train.lr or check the data"
            )
        self.model.eval()
        validated = eval_schedule.validates(self.config, epoch + 1, self.budget_done(epoch + 1, state.step))
        valid = self.evaluate(self.valid_data) if validated else {}
        density = self.adapted.density()
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": self.lr_at(max(state.step - 1, 0), state),
            "train_loss": sums["loss"] / max(sums["frames"], 1),
            "valid_loss": valid.get("loss"),
            "valid_energy_mae": valid.get("energy_per_atom_mae"),
            "valid_forces_mae": valid.get("forces_mae"),
            **{f"valid_{k}": v for k, v in valid.items() if "." in k and k.endswith("_mae")},  # extra heads
            "density": density["overall"],
            "changed": density["changed"],
            "target_met": self.density_met(state),
            "seconds": time.perf_counter() - start,
        }
        state.history.append(row)
        state.epoch = epoch + 1
        state.step_in_epoch = 0
        state.epoch_sums = {}
        self._after_epoch(state, valid, validated)
        self.log(_summary(row, self.config.epochs))

    def _local_batch(self, indices: list[int]):
        """This rank's share of one global batch, moved to the device once: ``(batch, weight)``;
        a rank whose share is empty computes one frame with weight 0 (every rank must take part
        in the gradient all-reduce)."""
        mine = ddp.rank_share(indices, self.dist.rank, self.dist.world_size) if self.dist else indices
        frames = [self.train_data[i] for i in (mine or indices[:1])]
        return to_device(collate(frames), self.device), 1.0 if mine else 0.0

    def _global_sum(self, value: torch.Tensor) -> float:
        if self.dist:
            ddp.all_reduce_sum(value)
        return float(value)

    def _step(self, local, state: TrainState) -> torch.Tensor:
        """One optimiser step on this rank's share ``(batch, weight)``; returns this rank's part of
        the global batch loss (detached, on the device: parts sum to the global loss)."""
        batch, share = local
        lr = self.lr_at(state.step, state)
        for group in self.optimizer.param_groups:
            search = 1.0 if state.support_fixed else group.get("search_lr_scale", 1.0)
            group["lr"] = lr * group.get("lr_scale", 1.0) * search
        self.sparse.before_step(state.step, state.support_fixed)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward_model(
            batch, training=True, compute_force=True, compute_stress=self.compute_stress, **self._heads_kwargs
        )
        sums = loss_sums(batch, out)
        totals = None
        if self.dist:  # normalise by the global label counts: the reduced gradient is the global batch's
            tasks = sorted(sums)
            counts = torch.stack([sums[t][1].detach() * share for t in tasks]) if tasks else torch.zeros(0)
            totals = dict(zip(tasks, ddp.all_reduce_sum(counts.to(torch.float64)).to(counts.dtype)))
        loss = total_loss(normalised(sums, totals), self.weights_at(state.step)) * share
        if torch.device(self.device).type == "cpu" and not torch.isfinite(loss):  # GPUs: checked per epoch
            raise FloatingPointError(
                f"step {state.step}: the training loss is {float(loss)} on a batch of "
                f"{self._batch_frames(batch)}; lower train.lr or check those frames"
            )
        # DDP averages gradients over ranks; the loss is a sum of rank parts, so scale by the world size
        (loss * self.dist.world_size if self.dist else loss).backward()
        if self.config.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
        self.optimizer.step()
        # the sparse modes' hooks (preconditioned proximal steps, pruning cuts), then the parts'
        # own (plain proximal L1 steps; once the support is fixed, only the masks are re-applied)
        penalty = 0.0 if state.support_fixed else self.l1_factor(state.step)
        self.sparse.after_step(state.step, lr, penalty, state.support_fixed, OptimizerView(self.optimizer))
        self.adapted.after_step(lr, penalty)
        if self.ema:
            self.ema.update()
        state.step += 1
        return loss.detach()

    def _batch_frames(self, batch) -> str:
        index = batch.get("source_frame")
        if index is None or self.frame_names is None:
            return f"{int(batch['ptr'].numel() - 1)} frames"
        names = [self.frame_names[int(k)] for k in index.reshape(-1).tolist()]
        return "frames " + ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")

    def _after_epoch(self, state: TrainState, valid: dict, validated: bool = True):
        c = self.config
        if not validated:  # train.eval_interval: nothing to compare
            state.done = self.finished(state)
            return
        metric = valid.get("loss", state.history[-1]["train_loss"])
        if c.scheduler == "plateau":
            if metric < state.plateau_best * (1 - 1e-4):
                state.plateau_best, state.plateau_bad = metric, 0
            else:
                state.plateau_bad += 1
                if state.plateau_bad > 2:
                    state.plateau_lr_scale *= 0.5
                    state.plateau_bad = 0
        # best = lowest validation loss; once the support is fixed only post-fix epochs qualify;
        # with the zero-shot guard an epoch no worse than zero-shot on every MAE beats any that is
        eligible = self.density_met(state)
        guarded = all(valid.get(k) is not None and valid[k] <= v for k, v in state.zero_shot.items())
        lower = metric < state.best_valid - 1e-6 * abs(state.best_valid if math.isfinite(state.best_valid) else 0)
        better = (guarded and not state.best_guarded) or (guarded == state.best_guarded and lower)
        if eligible and better:
            state.best_valid, state.best_epoch, state.bad_epochs = metric, state.epoch, 0
            state.best_guarded = guarded
            self.best_params = self.snapshot()
        elif eligible:
            state.bad_epochs += 1
        state.done = self.finished(state)
        if state.done and not self.budget_done(state.epoch, state.step):
            self.log(f"early stopping: no validation improvement for {state.bad_epochs} validated epochs")

    def budget_done(self, epoch: int, step: int) -> bool:
        """Whether ``epoch`` completed epochs or ``step`` steps spend the budget."""
        c = self.config
        return epoch >= c.epochs or (c.max_steps is not None and step >= c.max_steps)

    def finished(self, state: TrainState) -> bool:
        """Whether training is over: the epoch or step budget is spent, or patience ran out (with
        ``train.swa``, in stage two: in stage one it starts stage two)."""
        c = self.config
        patience_out = c.patience is not None and state.bad_epochs > c.patience
        return self.budget_done(state.epoch, state.step) or (patience_out and not stage_two.due(c, state))

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the trainable values as used for evaluation (EMA values when enabled)."""
        source = self.ema.shadow if self.ema else self.params
        return [p.detach().clone() for p in source]

    @torch.no_grad()
    def load_best(self) -> None:
        """Put the best (or, without validation, the final EMA) values into the model."""
        values = self.best_params or self.snapshot()
        for p, v in zip(self.params, values):
            p.copy_(v)
        self.adapted.after_step(0.0)  # re-applies fixed masks


# validation MAEs the zero-shot guard keeps from regressing, of every head ("<head>.forces_mae", ...)
GUARDED = ("energy_per_atom_mae", "forces_mae", "magmoms_mae")


def _kept(value, old: torch.Tensor, new: torch.Tensor, positions: torch.Tensor | None):
    """``value`` (a per-entry tensor of parameter ``old``, or anything else) for the compacted
    parameter ``new``: its ``positions`` when it has ``old``'s shape."""
    if new is old or not torch.is_tensor(value) or value.shape != old.shape:
        return value
    if positions is None:  # recompacted from a checkpoint: what it holds is restored from there
        return torch.zeros_like(new)
    return value[positions].clone()


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _summary(row: dict, epochs: int) -> str:
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
