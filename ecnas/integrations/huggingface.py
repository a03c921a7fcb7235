"""Hugging Face Trainer callback: the energy of a ``Trainer.train`` run, in energy-table rows.

Install the extra: ``pip install ecnas[huggingface]``::

    from ecnas.integrations.huggingface import EnergyCallback

    energy = EnergyCallback(repeat=1)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
                                   eval_dataset=val, compute_metrics=accuracy,
                                   callbacks=[energy])
    trainer.train()
    df = energy.table()          # one row per checkpoint: epoch 0, 1, …

Metering starts at ``on_train_begin`` with a checkpoint at the start epoch (after the
evaluation that ``eval_on_start=True`` runs, which then carries its metrics). Evaluations
count as evaluation, not training time: the Trainer has no "evaluation begins" hook, so the
callback opens the evaluation interval where the Trainer has just decided to evaluate
(``control.should_evaluate`` after ``on_step_end``/``on_epoch_end``) and closes it at
``on_evaluate``. Each epoch ends with a checkpoint, after that epoch's evaluation when one
follows, carrying the evaluation metrics (``eval_accuracy`` → ``validation_accuracy`` by
default) and the latest training logs (``loss``, ``learning_rate`` …).

Each epoch's end also puts the energy into the Trainer's log dict (``Trainer.log``, which
feeds ``report_to``: TensorBoard, MLflow, W&B …, and ``state.log_history``):
``energy/energy_j`` (cumulative, joules), ``energy/{gpu,cpu,dram}_energy_j``,
``energy/power_w`` (mean power since the last energy log) and ``energy/estimated`` (1
estimated, 0 measured); ``log_steps=True`` adds them at the Trainer's logging steps. The
reporting callbacks read the log dict in callback order, and the Trainer puts the ones it
makes before those passed in ``callbacks=``: add the callback with ``energy.attach(trainer)``
(first in line) for them to see the energy::

    trainer = transformers.Trainer(model=model, args=args, train_dataset=train)
    energy = EnergyCallback().attach(trainer)

Under ``torchrun``/``accelerate launch`` (one node or many) every rank meters what it owns and
each checkpoint is gathered across the ranks: ``table()`` on any rank holds the job's totals
with per-node and per-GPU columns (docs/distributed.md); the energy logged through the
Trainer's log dict is the job's too (every rank reaches the same logging points).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ecnas.integrations._run import (
    LOG_PREFIX,
    RunResults,
    TrackedRun,
    check_prefix,
    count_trainable,
    spec_columns,
)
from ecnas.monitor.distributed import topology

INSTALL_HINT = ("ecnas.integrations.huggingface needs transformers and accelerate: "
                "pip install ecnas[huggingface]")

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError(INSTALL_HINT) from None

__all__ = ["EnergyCallback"]


class EnergyCallback(RunResults, TrainerCallback):
    """Meters a Hugging Face ``Trainer`` run with :class:`ecnas.tracker.tracker.EnergyTracker`.

    Same options as :class:`ecnas.integrations.lightning.EnergyCallback`: ``spec`` or
    ``matrix`` + ``ops`` for a NAS-Bench-101 cell, ``metric_map``, ``keep_other_metrics``,
    ``monitor`` / ``meters``, and static columns as keywords; ``log_energy`` /
    ``log_steps`` / ``log_prefix`` as there, through the Trainer's log dict.
    """

    def __init__(self, *, spec: Any = None, matrix: str | None = None, ops: str | None = None,
                 metric_map: Mapping[str, str] | None = None, keep_other_metrics: bool = True,
                 monitor: Any = None, meters: Sequence[Any] | None = None,
                 log_energy: bool = True, log_steps: bool = False,
                 log_prefix: str = LOG_PREFIX, **static: Any) -> None:
        self._log_energy, self._log_steps = log_energy, log_steps
        self._log_prefix = check_prefix(log_prefix)
        self._pending_log: dict[str, float] = {}  # energy scalars for the Trainer's next log
        columns = {**spec_columns(spec, matrix, ops), **static}
        self._run = TrackedRun(metric_map=metric_map, keep_other_metrics=keep_other_metrics,
                               monitor=monitor, meters=meters, static=columns,
                               producer="ecnas.integrations.huggingface")
        self._logs: dict[str, Any] = {}  # training logs since the last checkpoint
        self._eval_metrics: dict[str, Any] = {}
        self._eval_step = -1  # global step of the last evaluation
        self._pending_epoch: float | None = None  # checkpoint waiting for its evaluation

    # -- Trainer hooks ---------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        """Start metering with the run's budget and trainable parameters, and checkpoint the
        start epoch, or open the evaluation that ``eval_on_start`` runs first. In a
        distributed job every rank meters what it owns and the checkpoints are gathered."""
        if not state.is_world_process_zero and topology() is None:
            return  # ranks ecnas cannot place: the meters see the whole machine
        epochs = getattr(state, "num_train_epochs", None) or args.num_train_epochs
        self._run.start(budget_epochs=math.ceil(epochs) if epochs and epochs > 0 else None,
                        trainable_params=count_trainable(model))
        start_epoch = _epoch(state)
        if getattr(args, "eval_on_start", False):
            self._pending_epoch = start_epoch  # the checkpoint carries that evaluation
            self._run.begin_eval()
        else:
            self._run.checkpoint(start_epoch, {})

    def attach(self, trainer: Any) -> EnergyCallback:
        """Add this callback to ``trainer`` ahead of its other callbacks, so the reporting
        integrations (TensorBoard, MLflow …) see the energy in the log dict; returns self."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Queue the energy for the Trainer's next log at logging steps (``log_steps``), and
        open the evaluation interval when the Trainer is about to evaluate."""
        if self._log_steps and self._log_energy and control.should_log:
            self._pending_log.update(self._run.log_scalars("step", None, self._log_prefix))
        if control.should_evaluate:  # the Trainer evaluates right after this hook
            self._run.begin_eval()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Queue this epoch's energy for the Trainer's log; checkpoint the epoch now, or after
        the evaluation the Trainer is about to run."""
        if not self._run.started:
            return
        if self._log_energy:
            # this epoch's energy, before its evaluation; the Trainer logs right after this hook
            self._pending_log.update(self._run.log_scalars("epoch", None, self._log_prefix))
            control.should_log = True
        if control.should_evaluate:
            self._pending_epoch = _epoch(state)
            self._run.begin_eval()
            return
        metrics = dict(self._logs)
        if self._eval_step == state.global_step:  # a step evaluation ended this epoch
            metrics.update(self._eval_metrics)
        self._checkpoint(_epoch(state), metrics)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                    **kwargs: Any) -> None:
        """Close the evaluation interval, keep its metrics, and write the checkpoint that waited
        for them."""
        self._run.end_eval()
        self._eval_metrics = dict(metrics or {})
        self._eval_step = state.global_step
        if self._pending_epoch is not None and self._run.started:
            epoch, self._pending_epoch = self._pending_epoch, None
            self._checkpoint(epoch, {**self._logs, **self._eval_metrics})

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
               **kwargs: Any) -> None:
        """Add the queued energy scalars to the Trainer's log dict (and ``log_history``), and
        keep the training logs for the next checkpoint."""
        if self._pending_log and logs is not None:
            logs.update(self._pending_log)  # callbacks after this one log them
            if state.log_history:
                state.log_history[-1].update(self._pending_log)  # the same log event
            self._pending_log = {}
        for key, value in (logs or {}).items():
            # evaluation metrics come through on_evaluate; energy logs are not row metrics
            if not key.startswith(("eval_", self._log_prefix)):
                self._logs[key] = value

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop the meters (:meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Stop the meters (``on_train_end`` does it; call it when ``train()`` raised)."""
        self._run.stop()

    def _checkpoint(self, epoch: float, metrics: Mapping[str, Any]) -> None:
        self._run.checkpoint(epoch, metrics)
        self._logs = {}


def _epoch(state: Any) -> float:
    # state.epoch is epoch + steps/steps_in_epoch: whole at an epoch's end, fractional when
    # max_steps stops mid-epoch; rounding hides float noise only
    return round(float(state.epoch or 0.0), 9)
