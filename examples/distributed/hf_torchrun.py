"""The Hugging Face Trainer under torchrun with the energy callback: one table with the job's
totals and per-node and per-GPU columns, on every rank.

    torchrun --standalone --nproc-per-node 2 examples/distributed/hf_torchrun.py
"""

from __future__ import annotations

import torch
from transformers import Trainer, TrainingArguments

from ecnas.integrations.huggingface import EnergyCallback


class Pairs(torch.utils.data.Dataset):
    """Random inputs and labels."""

    def __init__(self) -> None:
        self.x, self.y = torch.randn(256, 32), torch.randint(0, 4, (256,))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Tiny(torch.nn.Module):
    """A small classifier returning the loss the Trainer expects."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(32, 4)

    def forward(self, x, labels=None):
        logits = self.layer(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def main() -> None:
    cuda = torch.cuda.is_available()
    args = TrainingArguments(output_dir="hf-out", num_train_epochs=2,
                             per_device_train_batch_size=32, use_cpu=not cuda, report_to=[],
                             save_strategy="no", logging_strategy="epoch", disable_tqdm=True,
                             ddp_backend="nccl" if cuda else "gloo")
    energy = EnergyCallback(repeat=1)
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Pairs(), callbacks=[energy])
    trainer.train()
    if trainer.args.process_index == 0:
        cols = [c for c in energy.table().columns if c.endswith("energy_j")]
        print(energy.table()[["epoch", *cols]].to_string(index=False))


if __name__ == "__main__":
    main()
