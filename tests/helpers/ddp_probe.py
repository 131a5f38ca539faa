"""`knd train` that also saves each rank's final learning rate and weights, for DDP tests.

Only rank 0 writes the model, so nothing else shows whether the ranks ended in step. In a
project directory: `torchrun --nproc_per_node 2 tests/helpers/ddp_probe.py OUT_DIR`.
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import torch
import torch.distributed as dist

from knd.config import load_config
from knd.training import train

OUT = Path(sys.argv[1])
trainers: list[weakref.ref] = []
original_init, original_barrier = train.Trainer.__init__, dist.barrier


def recording_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    trainers.append(weakref.ref(self))  # weak: `fit` must free it before the process group


def saving_barrier(*args, **kwargs):
    """`fit`'s last collective, reached while its trainer still lives."""
    trainer = trainers[-1]()
    weights = {k: v.detach() for k, v in trainer.model.named_parameters()}
    state = {"lr": trainer.optimizer.param_groups[0]["lr"], "weights": weights}
    torch.save(state, OUT / f"rank{dist.get_rank()}.pt")
    del trainer, weights
    return original_barrier(*args, **kwargs)


train.Trainer.__init__ = recording_init
dist.barrier = saving_barrier
train.train(load_config())
