"""Meter a torchrun job with no change but ``gather=True``: each rank reads its own GPU, the
node's local rank 0 its CPU packages and DRAM, and every rank gets the job's total.

    torchrun --standalone --nproc-per-node 2 examples/distributed/torchrun_measure.py

Runs on CPU (gloo) or GPUs (NCCL, one process per GPU). docs/distributed.md explains the rules.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ecnas import measure


def main() -> None:
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(),
                            torch.nn.Linear(256, 10)).to(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with measure("train", gather=True) as m:  # collective: every rank ends it
        for _ in range(200 if cuda else 50):
            x = torch.randn(64, 256, device=device)
            loss = model(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    own = "estimated" if m.report.estimated else "measured"
    print(f"rank {rank}: its share {m.report.energy_j:.3f} J ({own})", flush=True)
    dist.barrier()
    if rank == 0:
        print(m.job.table())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
