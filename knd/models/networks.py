"""Classifier networks over a normalised feature image `(batch, 1, bins, frames)` -> logits
(`LayerHead`: over an encoder's hidden states, `(batch, layers, frames, dim)`).

Emotion lives in how the voice changes over time, so every network except the reference `cnn`
keeps a time axis to the end and pools it explicitly (`model.pooling`): mean, mean+std
statistics, or attentive statistics that learn which frames carry the emotion.

Every network is a `Network`: `embed` maps the input to its pooled vector (what the last linear
layer sees, before dropout), `classify` maps that to logits. `knd predict --embeddings` returns
the vector, for users who train their own classifiers on top.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from knd.config import ModelConfig
from knd.errors import KndError


def conv_bn(cin: int, cout: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SubsampledPointwise(nn.Conv2d):
    """A strided 1x1 convolution computed as the subsampling it amounts to, then a 1x1 one.

    The same numbers and parameters, but not oneDNN's strided 1x1 backward kernel, which
    crashes the process (segmentation fault) on AVX-512 CPUs in PyTorch 2.11 when the input has
    8 or fewer channels, as a narrow `model.channels` such as [8, 16, 32, 64] gives.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.stride
        return nn.functional.conv2d(x[:, :, ::rows, ::cols], self.weight, self.bias)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a (projected) shortcut; `stride` downsamples."""

    def __init__(self, cin: int, cout: int, stride: int | tuple[int, int] = 2):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(
                # Only narrow inputs take the detour: wider ones keep the plain kernel (and the
                # default its exact numbers), and the first block's single input channel needs
                # no gradient, so it never meets the crash.
                (SubsampledPointwise if 1 < cin <= 8 else nn.Conv2d)(
                    cin, cout, 1, stride, bias=False
                ),
                nn.BatchNorm2d(cout),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class TemporalPooling(nn.Module):
    """`(batch, dim, time)` -> `(batch, out_dim)` by mean, statistics or attentive statistics."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        self.out_dim = dim if kind == "mean" else 2 * dim
        if kind == "attention":
            self.attention = nn.Sequential(
                nn.Conv1d(dim, dim // 4, 1), nn.Tanh(), nn.Conv1d(dim // 4, dim, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return x.mean(dim=-1)
        if self.kind == "stats":
            weights = torch.full_like(x, 1.0 / x.shape[-1])
        else:
            weights = torch.softmax(self.attention(x), dim=-1)
        mean = (weights * x).sum(dim=-1)
        var = (weights * x.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe


class TemporalContext(nn.Module):
    """`(batch, dim, frames)` -> `(batch, d_model, frames)`: a projection, then (with
    `model.use_transformer`) sinusoidal positions and a Transformer encoder over every frame, so
    each frame's features also say where it sits in the sentence and what surrounds it."""

    def __init__(self, dim: int, cfg: ModelConfig, max_frames: int = 2048):
        super().__init__()
        self.project = nn.Linear(dim, cfg.d_model)
        self.transformer = None
        if cfg.use_transformer:  # positions only mean something to the attention
            self.register_buffer("positions", sinusoidal_encoding(max_frames, cfg.d_model), False)
            self.transformer = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(
                    cfg.d_model, cfg.n_heads, 2 * cfg.d_model, cfg.dropout, batch_first=True
                ),
                cfg.n_layers,
                enable_nested_tensor=False,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x.transpose(1, 2))
        if self.transformer is not None:
            x = self.transformer(x + self.positions[: x.shape[1]])
        return x.transpose(1, 2)


class Network(nn.Module, ABC):
    """A classifier whose forward pass is `classify(embed(x))`."""

    @abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """`(batch, 1, bins, frames)` -> the pooled `(batch, dim)` embedding."""

    @abstractmethod
    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """The pooled embedding -> logits."""

    @property
    @abstractmethod
    def output(self) -> nn.Linear:
        """The last linear layer, the only one whose shape depends on the label count."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) from one pass."""
        embedding = self.embed(x)
        return self.classify(embedding), embedding


class CNN(Network):
    """The reference 4-block CNN (conv-BN-ReLU-pool-dropout), globally average-pooled."""

    def __init__(self, cfg: ModelConfig, n_classes: int, n_bins: int):
        super().__init__()
        layers, cin = [], 1
        for cout in cfg.channels:
            layers += [conv_bn(cin, cout), nn.MaxPool2d(2), nn.Dropout(cfg.dropout)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, n_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:-1](self.features(x))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head[-1](embedding)

    @property
    def output(self) -> nn.Linear:
        return self.head[-1]


class PooledHead(nn.Module):
    """Collapse frequency, pool time (`embed`), classify: the time-aware networks' shared head.

    `model.frequency=flatten` stacks the trunk's `bins` frequency rows into the feature vector
    instead of averaging them, so the pooling and the classifier still know in which band a
    pattern sits (how high the pitch and the formants are), which an average throws away.
    """

    def __init__(self, dim: int, n_classes: int, cfg: ModelConfig, bins: int = 1):
        super().__init__()
        self.flatten = cfg.frequency == "flatten"
        self.pool = TemporalPooling(self.collapsed_width(dim, bins, cfg), cfg.pooling)
        self.classify = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(self.pool.out_dim, n_classes)
        )

    @staticmethod
    def collapsed_width(dim: int, bins: int, cfg: ModelConfig) -> int:
        """The channels `collapse` leaves per frame: `dim` x `bins` when flattened."""
        return dim * bins if cfg.frequency == "flatten" else dim

    def collapse(self, x: torch.Tensor) -> torch.Tensor:
        """`(batch, dim, bins, time)` -> `(batch, dim [x bins], time)`, by `model.frequency`."""
        return x.flatten(1, 2) if self.flatten else x.mean(dim=2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """`(batch, dim, [bins,] time)` -> the pooled vector the classifier layer sees."""
        return self.pool(self.collapse(x) if x.dim() == 4 else x)


class PooledNet(Network):
    """A network whose `trunk` output goes through a `PooledHead` (`self.head`)."""

    head: PooledHead

    @abstractmethod
    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The input -> the `(batch, dim, [bins,] time)` features the head pools."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.embed(self.trunk(x))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head.classify(embedding)

    @property
    def output(self) -> nn.Linear:
        return self.head.classify[-1]


class SERNet(PooledNet):
    """knd's default: a small residual CNN with attentive statistics pooling over time.

    The first block downsamples at once (full-resolution convolutions dominate CPU time), and
    later blocks downsample frequency only, keeping enough frames for the pooling to weigh.
    The blocks see 0.8 s around each frame; `model.use_transformer` stacks a `TemporalContext`
    beside them, so the pooling also weighs each moment against the whole sentence.
    """

    def __init__(self, cfg: ModelConfig, n_classes: int, n_bins: int):
        super().__init__()
        blocks, cin = [], 1
        for i, cout in enumerate(cfg.channels):
            blocks.append(ResBlock(cin, cout, stride=(2, 2) if i < 2 else (2, 1)))
            cin = cout
        self.features = nn.Sequential(*blocks)
        bins = halved(n_bins, len(cfg.channels), math.ceil)
        width = PooledHead.collapsed_width(cin, bins, cfg)
        self.context = TemporalContext(width, cfg) if cfg.use_transformer else None
        self.head = (
            PooledHead(cin, n_classes, cfg, bins)
            if self.context is None  # the pooling sees the collapsed rows and their context
            else PooledHead(width + cfg.d_model, n_classes, cfg)
        )
        _init_weights(self)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.context is None:
            return x
        x = self.head.collapse(x)
        return torch.cat([x, self.context(x)], dim=1)


class VGG(PooledNet):
    """VGGish-style stack (conv, conv, then conv pairs) with BatchNorm, to train from scratch."""

    def __init__(self, cfg: ModelConfig, n_classes: int, n_bins: int):
        super().__init__()
        layers, cin = [], 1
        for i, cout in enumerate(cfg.channels):
            for _ in range(1 if i < 2 else 2):
                layers.append(conv_bn(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = PooledHead(cin, n_classes, cfg, halved(n_bins, len(cfg.channels), math.floor))
        _init_weights(self)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ResNet18(PooledNet):
    """torchvision ResNet18 with a 1-channel stem and time-preserving pooling instead of avgpool."""

    def __init__(self, cfg: ModelConfig, n_classes: int, n_bins: int):
        super().__init__()
        from torchvision.models import ResNet18_Weights, resnet18

        weights = ResNet18_Weights.IMAGENET1K_V1 if cfg.pretrained else None
        try:
            net = resnet18(weights=weights)
        except Exception as err:  # no network, no cached file: say how to fix it
            raise KndError(
                f"model.pretrained: cannot load ImageNet weights for ResNet18 ({err}). Put "
                f"{weights.url.rsplit('/', 1)[-1]} in {torch.hub.get_dir()}/checkpoints/ "
                "or set model.pretrained=false"
            ) from None
        stem = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        if cfg.pretrained:
            stem.weight.data = net.conv1.weight.data.sum(dim=1, keepdim=True)
        net.conv1 = stem
        self.features = nn.Sequential(*list(net.children())[:-2])
        # The stem, its max-pool and three of the four stages each halve frequency (rounding up).
        self.head = PooledHead(512, n_classes, cfg, halved(n_bins, 5, math.ceil))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ACNT(PooledNet):
    """Residual CNN front end -> projection -> sinusoidal positions -> Transformer -> pooling."""

    def __init__(self, cfg: ModelConfig, n_classes: int, n_bins: int):
        super().__init__()
        blocks, cin, bins = [], 1, n_bins
        for cout in cfg.channels:
            blocks.append(ResBlock(cin, cout, stride=2))
            cin, bins = cout, (bins + 1) // 2
        self.features = nn.Sequential(*blocks)
        self.context = TemporalContext(cin * bins, cfg)
        self.head = PooledHead(cfg.d_model, n_classes, cfg)
        _init_weights(self)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(self.features(x).flatten(1, 2))


class LayerHead(PooledNet):
    """The head over a frozen encoder's cached layers (EmoBox's recipe).

    Input: `(batch, layers, frames, dim)` hidden states, normalised per layer and dimension. A
    learned softmax weighting mixes the layers (emotion lives in middle layers, which one
    depends on the encoder), a linear projection with ReLU narrows the mix to `model.d_model`,
    then the shared pooled head (attentive statistics by default) classifies it.
    """

    def __init__(self, cfg: ModelConfig, n_classes: int, n_layers: int, dim: int):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(n_layers))
        self.project = nn.Sequential(nn.Linear(dim, cfg.d_model), nn.ReLU())
        self.head = PooledHead(cfg.d_model, n_classes, cfg)
        _init_weights(self)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=0).reshape(1, -1, 1, 1)
        mixed = (weights * x).sum(dim=1)  # (batch, frames, dim)
        return self.project(mixed).transpose(1, 2)  # (batch, d_model, frames)


class Ensemble(nn.Module):
    """`model.members` independently initialised networks, each trained on batches of its own.

    In training each member sees its own slice of `(members, batch, ...)` inputs and returns its
    own logits, `(members, batch, classes)`, for its own loss, so the members stay as diverse as
    separately trained networks; prediction returns the log of their averaged probabilities,
    which a softmax turns back into that average. Its embedding is the members' embeddings
    concatenated: independently initialised members learn unrelated coordinates, so averaging
    them would mix meanings.
    """

    def __init__(self, members: list[Network]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return torch.stack([member(xi) for member, xi in zip(self.members, x, strict=True)])
        return self._combine(torch.stack([member(x) for member in self.members]))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embeddings = zip(*(m.forward_with_embedding(x) for m in self.members), strict=True)
        return self._combine(torch.stack(logits)), torch.cat(embeddings, dim=1)

    def _combine(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(len(logits))


def networks(net: nn.Module) -> list[nn.Module]:
    """An ensemble's members, or the network itself: each has its own output layer and gradients."""
    return list(net.members) if isinstance(net, Ensemble) else [net]


MODELS = {
    "cnn": CNN,
    "resnet18": ResNet18,
    "acnt": ACNT,
    "vgg": VGG,
    "sernet": SERNet,
    "layer_head": LayerHead,
}


def build_model(cfg: ModelConfig, n_classes: int, *input_shape: int) -> nn.Module:
    """`input_shape`: a clip's features without the time axis: `n_bins` of a spectrogram image,
    or `n_layers, dim` of an encoder's hidden states (`LayerHead`)."""
    nets = [MODELS[cfg.name](cfg, n_classes, *input_shape) for _ in range(cfg.members)]
    return nets[0] if cfg.members == 1 else Ensemble(nets)


def halved(bins: int, times: int, rounding) -> int:
    """Frequency rows left after `times` stride-2 steps (`math.ceil`: padded convolutions,
    `math.floor`: unpadded pooling)."""
    for _ in range(times):
        bins = rounding(bins / 2)
    return bins


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _init_weights(model: nn.Module) -> None:
    """Kaiming for convolutions (ReLU follows), Xavier for linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
