"""Lightning DDP with the energy callback: every rank meters what it owns, each epoch's
checkpoint is gathered, and the table holds the job's totals with per-node and per-GPU columns.

    python examples/distributed/lightning_ddp.py        # 2 processes on CPU (or GPUs)

Multi-node: ``num_nodes=M`` with Lightning's usual launch (torchrun or srun on each node).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ecnas.integrations.lightning import EnergyCallback


class Tiny(pl.LightningModule):
    """A small classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(32, 4)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    data = TensorDataset(torch.randn(512, 32), torch.randint(0, 4, (512,)))
    energy = EnergyCallback(repeat=1)
    gpus = torch.cuda.device_count()
    trainer = pl.Trainer(max_epochs=2, callbacks=[energy], strategy="ddp",
                         accelerator="gpu" if gpus else "cpu", devices=gpus or 2,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(Tiny(), DataLoader(data, batch_size=32))
    if trainer.global_rank == 0:
        cols = [c for c in energy.table().columns if c.endswith("energy_j")]
        print(energy.table()[["epoch", *cols]].to_string(index=False))


if __name__ == "__main__":
    main()
