"""Lightning and Hugging Face Trainer callbacks: real tiny training runs on CPU (a linear model,
random tensors, 2 epochs) metered by ecnas' default meters, compared with what
``EnergyTracker`` produces; and the install hint when a framework is missing."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecnas.errors import InputError
from ecnas.integrations._run import DEFAULT_METRIC_MAP, map_metrics
from ecnas.tracker.rows import CONTRACT_COLUMNS, contract_problems
from ecnas.tracker.tracker import EnergyTracker

EVAL_SLEEP_S = 0.03  # per validation batch: evaluation time the rows must keep out of training
TRAIN_SLEEP_S = 0.005  # per training batch: so training time is clearly above zero
CELL = ("0110000010000010000100000", "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,output")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECNAS_CACHE_DIR", str(tmp_path_factory.mktemp("ecnas-cache")))
        yield


@pytest.fixture(scope="module")
def tracker_rows() -> list[dict[str, Any]]:
    """Rows of a plain EnergyTracker run: the reference the callbacks must match."""
    with EnergyTracker() as tracker:
        tracker.checkpoint(0)
        for epoch in tracker.epochs(1):
            with tracker.evaluating():
                pass
            tracker.checkpoint(epoch + 1, validation_accuracy=0.5)
    return tracker.rows(arch_hash="", matrix="", ops="", budget_epochs=1, repeat=1,
                        trainable_params=18, flops=math.nan)


def _check_like_tracker(rows: list[dict[str, Any]], reference: list[dict[str, Any]],
                        extras: set[str]) -> None:
    assert contract_problems(rows) == []
    assert set(CONTRACT_COLUMNS) <= set(rows[0])
    for row in rows:
        # same columns as the tracker's rows, plus the framework's own logged metrics
        assert set(row) - set(reference[0]) <= extras
        assert set(reference[0]) <= set(row)
        for col in reference[0]:
            assert type(row[col]) is type(reference[0][col]), col
        assert row["source"] == "measured"
        assert row["device"] == reference[0]["device"]
        assert row["training_time_s"] <= row["wall_time_s"]
    energies = [r["energy_j"] for r in rows]
    assert energies == sorted(energies)  # cumulative
    assert [r["wall_time_s"] for r in rows] == sorted(r["wall_time_s"] for r in rows)
    for row in rows:
        parts = [row[c] for c in ("gpu_energy_j", "cpu_energy_j", "dram_energy_j")
                 if not math.isnan(row[c])]
        assert parts and math.isclose(row["energy_j"], math.fsum(parts))


# -- PyTorch Lightning ---------------------------------------------------------------------

def _lightning_fit(tmp_path: Path, callback: Any, *, val_every: int = 1,
                   **trainer_args: Any) -> list[float]:
    """2 epochs of a linear model on random tensors (4 steps, 4 validation batches each);
    ``trainer_args`` override the Trainer's settings (``logger`` …)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    val_accs: list[float] = []

    class Linear(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            time.sleep(TRAIN_SLEEP_S)
            loss = torch.nn.functional.cross_entropy(self.layer(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            time.sleep(EVAL_SLEEP_S)
            self.log("val_acc", (self.layer(x).argmax(1) == y).float().mean())

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                val_accs.append(float(self.trainer.callback_metrics["val_acc"]))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 8, generator=gen), torch.randint(0, 2, (64,), generator=gen))
    settings = {"logger": False, **trainer_args}
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         check_val_every_n_epoch=val_every, num_sanity_val_steps=1, **settings)
    trainer.fit(Linear(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=16))
    return val_accs


@pytest.mark.filterwarnings("ignore")
def test_lightning_rows_match_tracker(tmp_path: Path, tracker_rows: list[dict]) -> None:
    from ecnas.integrations.lightning import EnergyCallback

    callback = EnergyCallback(repeat=3)
    val_accs = _lightning_fit(tmp_path, callback)
    rows = callback.rows()
    assert [r["epoch"] for r in rows] == [0.0, 1.0, 2.0]
    _check_like_tracker(rows, tracker_rows, extras={"train_loss"})
    assert [r["validation_accuracy"] for r in rows[1:]] == pytest.approx(val_accs)
    assert math.isnan(rows[0]["validation_accuracy"])
    assert all(math.isnan(r["train_accuracy"]) and math.isnan(r["test_accuracy"]) for r in rows)
    assert all(r["repeat"] == 3 and r["budget_epochs"] == 2 for r in rows)
    assert all(r["trainable_params"] == 8 * 2 + 2 for r in rows)
    assert all(r["arch_hash"] == r["matrix"] == r["ops"] == "" for r in rows)
    # 4 validation batches per epoch, each sleeping: evaluation is kept out of training time
    for n, row in enumerate(rows[1:], start=1):
        assert row["wall_time_s"] - row["training_time_s"] >= n * 4 * EVAL_SLEEP_S * 0.95
        assert row["training_time_s"] >= n * 4 * TRAIN_SLEEP_S * 0.95
    assert rows[0]["energy_j"] <= rows[1]["energy_j"] < rows[2]["energy_j"]
    # no RAPL and no GPU here: the CPU energy is estimated, and the callback says why
    assert all(r["estimated"] for r in rows)
    assert callback.reasons and any("estimate" in reason for reason in callback.reasons)
    assert callback.tracker is not None and not callback.tracker.started  # meters closed
    assert callback.energy_j == rows[-1]["energy_j"]


@pytest.mark.filterwarnings("ignore")
def test_lightning_nas_cell_epoch_without_validation_and_table(tmp_path: Path) -> None:
    from ecnas.integrations.lightning import EnergyCallback
    from ecnas.space import ModelSpec

    callback = EnergyCallback(matrix=CELL[0], ops=CELL[1], metric_map={"val_acc": "test_accuracy"},
                              keep_other_metrics=False)
    val_accs = _lightning_fit(tmp_path, callback, val_every=2)
    rows = callback.rows(repeat=2)
    spec = ModelSpec(*CELL)
    assert {(r["arch_hash"], r["matrix"], r["ops"]) for r in rows} == {
        (spec.hash(), spec.matrix_str, spec.ops_str)}
    assert all(r["repeat"] == 2 for r in rows)
    # epoch 1 ran no validation: no stale accuracy, and no evaluation time
    assert math.isnan(rows[1]["test_accuracy"])
    assert rows[1]["wall_time_s"] - rows[1]["training_time_s"] < 4 * EVAL_SLEEP_S
    assert rows[2]["test_accuracy"] == pytest.approx(val_accs[-1])
    assert all(math.isnan(r["validation_accuracy"]) for r in rows)
    assert not {"train_loss", "val_acc"} & set(rows[0])  # keep_other_metrics=False
    df = callback.table()
    assert list(df["epoch"]) == [0.0, 1.0, 2.0]
    assert str(df["estimated"].dtype) == "bool" and str(df["repeat"].dtype) == "int64"
    meta = df.attrs["ecnas"]
    assert meta["producer"] == "ecnas.integrations.lightning"
    assert meta["estimated_because"] == list(callback.reasons)


# -- Hugging Face Trainer ------------------------------------------------------------------

def _hf_train(tmp_path: Path, callback: Any, **arg_overrides: Any) -> Any:
    trainer = _hf_trainer(tmp_path, [callback], **arg_overrides)
    trainer.train()
    return trainer


def _hf_trainer(tmp_path: Path, callbacks: list[Any], **arg_overrides: Any) -> Any:
    """A Trainer for a linear model on random tensors (2 epochs of 4 steps, CPU)."""
    import numpy as np
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    class Random(Dataset):
        def __init__(self, n: int, seed: int) -> None:
            gen = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 8, generator=gen)
            self.y = torch.randint(0, 2, (n,), generator=gen)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"x": self.x[i], "labels": self.y[i]}

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
            time.sleep(TRAIN_SLEEP_S if self.training else EVAL_SLEEP_S)
            logits = self.layer(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, 1) == pred.label_ids).mean())}

    settings = {"eval_strategy": "epoch", "logging_strategy": "epoch", "report_to": [],
                **arg_overrides}
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2,
                             per_device_train_batch_size=16, per_device_eval_batch_size=16,
                             save_strategy="no", use_cpu=True, remove_unused_columns=False,
                             disable_tqdm=True, **settings)
    return Trainer(model=Linear(), args=args, train_dataset=Random(64, 0),
                   eval_dataset=Random(64, 1), compute_metrics=accuracy, callbacks=callbacks)


@pytest.mark.filterwarnings("ignore")
def test_huggingface_rows_match_tracker(tmp_path: Path, tracker_rows: list[dict]) -> None:
    from ecnas.integrations.huggingface import EnergyCallback

    callback = EnergyCallback()
    trainer = _hf_train(tmp_path, callback, eval_on_start=True)
    rows = callback.rows()
    assert [r["epoch"] for r in rows] == [0.0, 1.0, 2.0]
    extras = {"loss", "grad_norm", "learning_rate", "eval_loss", "eval_runtime",
              "eval_samples_per_second", "eval_steps_per_second"}
    _check_like_tracker(rows, tracker_rows, extras=extras)
    evals = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    assert len(evals) == 3  # on start, after epoch 1, after epoch 2
    assert [r["validation_accuracy"] for r in rows] == pytest.approx(evals)
    assert "loss" not in rows[0]  # no training step before epoch 0
    assert rows[1]["loss"] > 0 and rows[2]["loss"] > 0
    assert all(r["budget_epochs"] == 2 and r["repeat"] == 1 for r in rows)
    assert all(r["trainable_params"] == 18 for r in rows)
    # 4 evaluation batches per evaluation, the first one before epoch 0's checkpoint
    for n, row in enumerate(rows):
        assert row["wall_time_s"] - row["training_time_s"] >= (n + 1) * 4 * EVAL_SLEEP_S * 0.95
    assert rows[2]["training_time_s"] >= 2 * 4 * TRAIN_SLEEP_S * 0.95
    assert all(r["estimated"] for r in rows) and callback.reasons
    df = callback.table(repeat=5)
    assert list(df["repeat"]) == [5, 5, 5]
    assert df.attrs["ecnas"]["producer"] == "ecnas.integrations.huggingface"


@pytest.mark.filterwarnings("ignore")
def test_huggingface_without_evaluation(tmp_path: Path) -> None:
    from ecnas.integrations.huggingface import EnergyCallback

    callback = EnergyCallback(matrix=CELL[0], ops=CELL[1], budget_epochs=4)
    _hf_train(tmp_path, callback, eval_strategy="no")
    rows = callback.rows()
    assert [r["epoch"] for r in rows] == [0.0, 1.0, 2.0]
    assert all(math.isnan(r["validation_accuracy"]) for r in rows)
    assert all(r["budget_epochs"] == 4 for r in rows)  # the user's value wins
    # nothing was evaluated: training time is the wall time
    assert all(r["wall_time_s"] - r["training_time_s"] < 1e-6 for r in rows)
    assert rows[0]["arch_hash"] and len(rows[0]["arch_hash"]) == 32


# -- without the frameworks and around them ------------------------------------------------

@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("ecnas.integrations.lightning", ("lightning", "pytorch_lightning"), "lightning"),
    ("ecnas.integrations.huggingface", ("transformers",), "huggingface"),
    ("ecnas.integrations.synetune", ("syne_tune",), "synetune"),
    ("ecnas.integrations.prometheus", ("prometheus_client",), "prometheus"),
])
def test_missing_framework_names_the_extra(module: str, blocked: tuple[str, ...],
                                           extra: str) -> None:
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)
    proc = subprocess.run([sys.executable, "-c", f"import sys; {block}; import {module}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:")
    assert f"pip install ecnas[{extra}]" in last


@pytest.mark.parametrize("module", ["ecnas.integrations.lightning",
                                    "ecnas.integrations.huggingface"])
def test_empty_log_prefix_is_refused(module: str) -> None:
    callback = pytest.importorskip(module, reason="framework not installed").EnergyCallback
    with pytest.raises(InputError, match="log_prefix"):
        callback(log_prefix="")


def test_map_metrics_rules() -> None:
    import torch

    raw = {"val_acc": torch.tensor(0.75), "eval_loss": 0.4, "epoch": 1.0, "vec": torch.ones(3),
           "name": "x"}
    assert map_metrics(raw, DEFAULT_METRIC_MAP, keep_other=True) == {
        "validation_accuracy": 0.75, "eval_loss": 0.4}
    assert map_metrics(raw, {}, keep_other=False) == {}
    with pytest.raises(InputError, match="'val_acc'=75.0.*not a fraction"):
        map_metrics({"val_acc": 75.0}, DEFAULT_METRIC_MAP, keep_other=True)
    with pytest.raises(InputError, match="'acc'.*not a number"):
        map_metrics({"acc": "high"}, {"acc": "train_accuracy"}, keep_other=True)


def test_rows_before_any_run_say_why() -> None:
    pytest.importorskip("lightning")
    from ecnas.integrations.lightning import EnergyCallback

    with pytest.raises(InputError, match="has not seen a training run"):
        EnergyCallback().rows()
    with pytest.raises(InputError, match="both matrix= and ops="):
        EnergyCallback(matrix=CELL[0])
