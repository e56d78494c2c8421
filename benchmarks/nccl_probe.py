"""Can two NCCL processes share one GPU? Spawns two ranks on cuda:0 and all-reduces a tensor.

Usage: python benchmarks/nccl_probe.py [--port 29517]

Prints each rank's result and a final verdict; exit status 0 when the all-reduce gave the right
sum, else non-zero with NCCL's error. Most NCCL versions refuse two ranks on one device
("Duplicate GPU detected"), which is why pointsup launches one process per GPU.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    value = torch.full((4,), float(rank + 1), device="cuda")
    dist.all_reduce(value)
    torch.cuda.synchronize()
    print(f"rank {rank}: all_reduce gave {value.tolist()} (expected [3.0, 3.0, 3.0, 3.0])", flush=True)
    if value.tolist() != [3.0] * 4:
        raise SystemExit(1)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=29517)
    args = parser.parse_args()
    print("NCCL", ".".join(map(str, torch.cuda.nccl.version())), flush=True)
    mp.start_processes(rank_main, args=(args.port,), nprocs=2, start_method="spawn")
    print("two NCCL ranks on one GPU: all_reduce OK")


if __name__ == "__main__":
    main()
