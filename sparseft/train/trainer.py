"""The training loop: steps, epochs, validation, support fixing and compaction; resumable from
a :class:`TrainState` at any step. Its other jobs live beside it: the optimiser and EMA
(``optim``), the schedules (``schedules``), the best epoch and stopping (``selection``),
checkpoints (``checkpoint``), logging (:mod:`sparseft.train_log`)."""

from __future__ import annotations

import dataclasses
import math
import signal
import time

from .._compat import torch
from ..adapters.sparse_modes import OptimizerView, SparseSchedule
from ..core.graph import collate, loader, to_device
from ..heads import HeadedModel, split_heads
from ..model import AdaptedModel
from ..train_log import epoch_summary
from . import distributed as ddp
from . import eval_schedule, schedules, selection, stage_two
from .losses import ErrorAccumulator, loss_sums, loss_terms, normalised, pointwise, total_loss
from .optim import EMA, make_optimizer
from .state import TrainState

__all__ = ["EMA", "Trainer", "TrainState", "make_optimizer"]


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
        self.error = pointwise(config.loss, config.huber_delta)
        self.steps_per_epoch = max(1, math.ceil(len(train_data) / config.batch_size))
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        stage_two.check_budget(config, self.steps_per_epoch, self.total_steps)
        selection.check_select_on(config, valid_data, compute_stress)
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
            return total_loss(loss_terms(batch, out, error=self.error), self.weights)

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
        restarts = self.fix_at_step is not None and self.sparse.restarts_schedule
        return schedules.learning_rate(
            self.config,
            step,
            state,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            cycle_end=self.fix_at_step if restarts else None,
        )

    def weights_at(self, step: int) -> dict:
        return schedules.loss_weights(self.config, self.weights, step)

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
                terms = loss_terms(batch, out, error=self.error)
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
            state.zero_shot = {
                k: v for k, v in valid.items() if k.rpartition(".")[2] in selection.GUARDED and v is not None
            }
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
        start = time.perf_counter()
        self._enter_stage(state)
        sums = self._train_steps(state)
        if sums is None:  # interrupted: the partial sums are in state.epoch_sums
            return
        epoch = state.epoch
        if not math.isfinite(sums["loss"]):
            raise FloatingPointError(
                f"epoch {epoch + 1}: the training loss is {sums['loss']}; lower train.lr or check the data"
            )
        self.model.eval()
        validated = eval_schedule.validates(self.config, epoch + 1, self.budget_done(epoch + 1, state.step))
        valid = self.evaluate(self.valid_data) if validated else {}
        row = self._epoch_row(state, sums, valid, time.perf_counter() - start)
        state.history.append(row)
        state.epoch = epoch + 1
        state.step_in_epoch = 0
        state.epoch_sums = {}
        self._after_epoch(state, valid, validated)
        self.log(epoch_summary(row, self.config.epochs))

    def _train_steps(self, state: TrainState) -> dict | None:
        """The optimiser steps of one epoch (from ``state.step_in_epoch`` on a resume): the epoch's
        ``{"loss": sum, "frames": n}`` over all ranks, or None when a stop was requested."""
        from tqdm import tqdm

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
                return None
        bar.close()
        sums["loss"] = self._global_sum(loss_sum)
        return sums

    def _epoch_row(self, state: TrainState, sums: dict, valid: dict, seconds: float) -> dict:
        """The history row of the epoch that just ended (``state.epoch`` not yet advanced)."""
        density = self.adapted.density()
        return {
            "epoch": state.epoch + 1,
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
            "seconds": seconds,
        }

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
        sums = loss_sums(batch, out, self.error)
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
        penalty = (
            0.0
            if state.support_fixed
            else schedules.l1_factor(self.config, state.step, self.fix_at_step or self.total_steps)
        )
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
        if validated:
            metric = selection.selection_metric(self.config, valid, state.history[-1]["train_loss"])
            if selection.judge_epoch(self.config, state, metric, valid, self.density_met(state)):
                self.best_params = self.snapshot()
        state.done = self.finished(state)
        if validated and state.done and not self.budget_done(state.epoch, state.step):
            self.log(f"early stopping: no validation improvement for {state.bad_epochs} validated epochs")

    def budget_done(self, epoch: int, step: int) -> bool:
        return selection.budget_done(self.config, epoch, step)

    def finished(self, state: TrainState) -> bool:
        return selection.finished(self.config, state)

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


def _kept(value, old: torch.Tensor, new: torch.Tensor, positions: torch.Tensor | None):
    """``value`` (a per-entry tensor of parameter ``old``, or anything else) for the compacted
    parameter ``new``: its ``positions`` when it has ``old``'s shape."""
    if new is old or not torch.is_tensor(value) or value.shape != old.shape:
        return value
    if positions is None:  # recompacted from a checkpoint: what it holds is restored from there
        return torch.zeros_like(new)
    return value[positions].clone()
