"""Distributed training runs the distributed-metering tests launch: Lightning DDP on CPU (two
processes it starts itself) and the Hugging Face Trainer under torchrun.

``python tests/fakes/dist_frameworks.py lightning|huggingface OUTDIR``: every rank writes the
job reports of its checkpoints to ``OUTDIR/jobs<rank>.json``; rank 0 also writes its energy
table's rows to ``OUTDIR/rows.json`` and the table's metadata to ``OUTDIR/meta.json``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

STEP_SLEEP_S = 0.02  # every step takes a little wall time: the live GPU counters move


def _dump(out: Path, rank: int, run: Any, rows: list[dict] | None, meta: Any) -> None:
    jobs = [json.loads(j.to_json()) for j in run.jobs]
    (out / f"jobs{rank}.json").write_text(json.dumps(jobs))
    if rows is not None:
        clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in r.items() if isinstance(v, (int, float, str, bool))} for r in rows]
        (out / "rows.json").write_text(json.dumps(clean))
        (out / "meta.json").write_text(json.dumps(meta, default=str))


def lightning(out: Path) -> None:
    import lightning.pytorch as pl

    from ecnas.integrations.lightning import EnergyCallback
    from ecnas.tables import get_metadata

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            time.sleep(STEP_SLEEP_S)
            return torch.nn.functional.cross_entropy(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=gen), torch.randint(0, 2, (32,), generator=gen))
    energy = EnergyCallback(repeat=1)
    trainer = pl.Trainer(max_epochs=2, callbacks=[energy], accelerator="cpu", devices=2,
                         strategy="ddp", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out / "pl")
    trainer.fit(Tiny(), DataLoader(data, batch_size=8))
    rank = trainer.global_rank
    if rank == 0:
        df = energy.table()
        _dump(out, rank, energy._run, energy.rows(), get_metadata(df))
    else:
        _dump(out, rank, energy._run, None, None)


class _Pairs(Dataset):
    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 4, generator=gen)
        self.y = torch.randint(0, 2, (32,), generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "labels": self.y[i]}


class _HfTiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
        time.sleep(STEP_SLEEP_S)
        logits = self.layer(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def huggingface(out: Path) -> None:
    from transformers import Trainer, TrainingArguments

    from ecnas.integrations.huggingface import EnergyCallback
    from ecnas.tables import get_metadata

    args = TrainingArguments(output_dir=str(out / "hf"), num_train_epochs=2,
                             per_device_train_batch_size=8, use_cpu=True, report_to=[],
                             save_strategy="no", logging_strategy="epoch", ddp_backend="gloo",
                             disable_tqdm=True, dataloader_num_workers=0)
    energy = EnergyCallback(repeat=1)
    trainer = Trainer(model=_HfTiny(), args=args, train_dataset=_Pairs(), callbacks=[energy])
    trainer.train()
    rank = trainer.args.process_index
    logged = [h["energy/energy_j"] for h in trainer.state.log_history if "energy/energy_j" in h]
    (out / f"logged{rank}.json").write_text(json.dumps(logged))
    if rank == 0:
        df = energy.table()
        _dump(out, rank, energy._run, energy.rows(), get_metadata(df))
    else:
        _dump(out, rank, energy._run, None, None)


if __name__ == "__main__":
    {"lightning": lightning, "huggingface": huggingface}[sys.argv[1]](Path(sys.argv[2]))
