"""PyTorch Lightning callback: the energy of a ``Trainer.fit`` run, in energy-table rows.

Install the extra: ``pip install ecnas[lightning]``. Works with ``lightning.pytorch`` and
with the older ``pytorch_lightning`` package (whichever imports first)::

    from ecnas.integrations.lightning import EnergyCallback

    energy = EnergyCallback(repeat=1)
    trainer = lightning.pytorch.Trainer(max_epochs=10, callbacks=[energy])
    trainer.fit(model, train_loader, val_loader)
    df = energy.table()          # one row per checkpoint: epoch 0, 1, …, 10

Metering starts at ``on_train_start`` (after the sanity check) with a checkpoint at the start
epoch (0 for a fresh run); validation loops count as evaluation, not training time; each
training epoch ends with a checkpoint carrying the metrics logged so far
(``trainer.callback_metrics``), mapped onto the table's accuracy columns by ``metric_map``.

With ``strategy="ddp"`` (one node or many) every rank meters what it owns (its GPU; the node's
CPU and DRAM on local rank 0) and each checkpoint is gathered across the ranks: ``table()`` on
any rank holds the job's totals with per-node and per-GPU columns (docs/distributed.md).

Each epoch's end also logs the energy through ``LightningModule.log`` (so it reaches every
logger the Trainer has: TensorBoard, MLflow, W&B, CSV …): ``energy/energy_j`` (cumulative,
joules), ``energy/{gpu,cpu,dram}_energy_j`` (the components metered), ``energy/power_w``
(mean power over the epoch) and ``energy/estimated`` (1 estimated, 0 measured);
``log_steps=True`` adds the same at the Trainer's logging steps with a ``_step`` suffix.
"""

from __future__ import annotations

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

INSTALL_HINT = ("ecnas.integrations.lightning needs PyTorch Lightning: "
                "pip install ecnas[lightning]")

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback  # type: ignore[assignment, unused-ignore]
    except ImportError:
        raise ImportError(INSTALL_HINT) from None

__all__ = ["EnergyCallback"]


class EnergyCallback(RunResults, Callback):
    """Meters a Lightning training run with :class:`ecnas.tracker.tracker.EnergyTracker`.

    ``spec`` (a :class:`ecnas.space.ModelSpec`) or ``matrix`` + ``ops`` — the NAS-Bench-101
    cell being trained, if it is one; otherwise ``arch_hash``/``matrix``/``ops`` are empty
    strings. ``metric_map`` — logged metric name → table column (default
    :data:`ecnas.integrations._run.DEFAULT_METRIC_MAP`; ``{}`` maps nothing).
    ``keep_other_metrics`` — other numeric metrics become extra columns under their names.
    ``monitor`` / ``meters`` — as for ``EnergyTracker``. ``log_energy`` — log the energy
    each epoch through ``pl_module.log`` (``log_steps`` also at logging steps; names start
    with ``log_prefix``, which the rows leave out). Remaining keywords are static columns
    of every row (``repeat``, ``budget_epochs``, ``device``, ``flops`` …).
    """

    def __init__(self, *, spec: Any = None, matrix: str | None = None, ops: str | None = None,
                 metric_map: Mapping[str, str] | None = None, keep_other_metrics: bool = True,
                 monitor: Any = None, meters: Sequence[Any] | None = None,
                 log_energy: bool = True, log_steps: bool = False,
                 log_prefix: str = LOG_PREFIX, **static: Any) -> None:
        super().__init__()
        self._log_energy, self._log_steps = log_energy, log_steps
        self._log_prefix = check_prefix(log_prefix)
        columns = {**spec_columns(spec, matrix, ops), **static}
        self._run = TrackedRun(metric_map=metric_map, keep_other_metrics=keep_other_metrics,
                               monitor=monitor, meters=meters, static=columns,
                               producer="ecnas.integrations.lightning")
        self._validated_this_epoch = False

    # -- Lightning hooks -------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Start metering (after the sanity check) with the run's budget and trainable
        parameters, and checkpoint the start epoch. In a distributed job every rank meters
        what it owns and the checkpoints are gathered (docs/distributed.md)."""
        if trainer.global_rank != 0 and topology() is None:
            return  # ranks ecnas cannot place: the meters see the whole machine, rank 0 reads
        max_epochs = trainer.max_epochs
        self._run.start(budget_epochs=max_epochs if max_epochs and max_epochs > 0 else None,
                        trainable_params=count_trainable(pl_module))
        self._run.checkpoint(trainer.current_epoch, {})  # 0, or the epoch a resumed run is at

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Note that this epoch has not been validated yet."""
        self._validated_this_epoch = False

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the evaluation interval (not for the sanity check)."""
        if not trainer.sanity_checking:
            self._run.begin_eval()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the evaluation interval and note that this epoch was validated."""
        if not trainer.sanity_checking and self._run.evaluating:
            self._run.end_eval()
            self._validated_this_epoch = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Checkpoint the epoch with the logged metrics (a previous epoch's validation metrics
        left out) and log its energy through ``pl_module.log_dict``."""
        if not self._run.started:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items()
                   if not k.startswith(self._log_prefix)}  # our own energy logs
        if not self._validated_this_epoch:
            # callback_metrics keeps the last validation's values: not this epoch's
            metrics = {k: v for k, v in metrics.items()
                       if not k.startswith("val")
                       and self._run.metric_map.get(k) != "validation_accuracy"}
        cp = self._run.checkpoint(trainer.current_epoch + 1, metrics)
        if self._log_energy and cp is not None:
            pl_module.log_dict(self._run.log_scalars("epoch", cp, self._log_prefix),
                               on_step=False, on_epoch=True, rank_zero_only=True)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """With ``log_steps``, log the energy at the Trainer's logging steps (names with a
        ``_step`` suffix)."""
        # global_step counts optimizer steps: log where the Trainer's own step logs land
        if (self._log_steps and self._run.started
                and trainer.global_step % max(trainer.log_every_n_steps, 1) == 0):
            pl_module.log_dict(self._run.log_scalars("step", None, self._log_prefix, "_step"),
                               on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Stop the meters; the rows are ready."""
        self._run.stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Stop the meters when training raised; the checkpoints so far stay readable."""
        self._run.stop()  # close the meters; the checkpoints so far stay readable
