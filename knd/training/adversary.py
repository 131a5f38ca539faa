"""Speaker-adversarial training: an embedding that does not tell the training actors apart.

A small head learns to name each clip's training actor from the pooled embedding, and its
gradient reaches the network reversed (Ganin and Lempitsky's gradient reversal), so the network
unlearns what identifies a voice while the emotion loss keeps what identifies the emotion. The
reversal ramps up from 0 over training (their schedule), so the head first learns to tell the
actors apart. The head lives only in training: checkpoints, `predict` and the export never see it.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from knd.models.networks import networks
from knd.training.augment import mixup_loss


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` going forward; its gradient times `-scale` going back."""
    return _Reverse.apply(x, scale)


class SpeakerAdversary(nn.Module):
    """Names the training actor of each clip; `loss` is what the network is trained against."""

    def __init__(self, dim: int, speakers: int, weight: float, hidden: int = 256):
        super().__init__()
        self.weight = weight
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, speakers))

    def loss(
        self,
        embedding: torch.Tensor,
        speaker_a: torch.Tensor,
        speaker_b: torch.Tensor,
        lam: float,
        progress: float,
    ) -> torch.Tensor:
        """A batch's speaker loss, its targets mixed like the emotions; `progress` in [0, 1]."""
        scale = self.weight * (2 / (1 + math.exp(-10 * progress)) - 1)
        logits = self.head(reverse_gradient(embedding, scale))
        return mixup_loss(nn.functional.cross_entropy, logits, speaker_a, speaker_b, lam)


def speaker_targets(speakers: pd.Series, train_index: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Each clip's training-actor number, -1 outside training (no clip there reaches the head).

    Returns the targets over all clips and how many training actors there are.
    """
    codes, actors = pd.factorize(speakers.iloc[train_index.numpy()])
    targets = torch.full((len(speakers),), -1, dtype=torch.long)
    targets[train_index] = torch.as_tensor(codes, dtype=torch.long)
    return targets, len(actors)


def embedding_dim(net: nn.Module) -> int:
    """Width of a network's (or an ensemble's concatenated) pooled embedding."""
    return sum(member.output.in_features for member in networks(net))
