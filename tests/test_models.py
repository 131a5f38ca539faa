"""Every architecture: forward shape and parameter count on the real feature shape."""

import dataclasses

import pytest
import torch
from helpers.project import compose_config

from knd.errors import KndError
from knd.models.networks import SubsampledPointwise, build_model, count_parameters

# (group, parameter range in millions) at the default 40 mel bands x 251 frames, 8 classes
EXPECTED = {
    "cnn": (0.35, 0.45),
    "resnet18": (11.0, 11.5),
    "acnt": (0.5, 1.5),
    "vgg": (1.0, 2.0),
    "sernet": (0.25, 0.45),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_forward_shape_and_size(name):
    cfg = compose_config(f"model={name}")
    model = build_model(cfg.model, 8, cfg.features.num_bins).eval()
    x = torch.randn(3, 1, cfg.features.num_bins, cfg.features.num_frames)
    assert model(x).shape == (3, 8)
    low, high = EXPECTED[name]
    assert low <= count_parameters(model) / 1e6 <= high


# Embedding width: what the last linear layer sees (stats and attention pooling double it)
# (sernet stacks its last block's 3 frequency rows: model.frequency=flatten)
EMBEDDING = {"cnn": 256, "resnet18": 1024, "acnt": 128, "vgg": 256, "sernet": 768}


@pytest.mark.parametrize("name", EXPECTED)
def test_the_embedding_is_what_the_last_layer_classifies(name):
    cfg = compose_config(f"model={name}")
    model = build_model(cfg.model, 8, cfg.features.num_bins).eval()
    x = torch.randn(3, 1, cfg.features.num_bins, 120)
    logits, embedding = model.forward_with_embedding(x)
    assert embedding.shape == (3, EMBEDDING[name])
    torch.testing.assert_close(logits, model(x))
    linear = model.head[-1] if name == "cnn" else model.head.classify[1]
    torch.testing.assert_close(linear(embedding), logits)


@pytest.mark.parametrize("name", ["sernet", "vgg", "resnet18"])
@pytest.mark.parametrize("n_bins", [40, 33, 64])
def test_flatten_stacks_every_frequency_row_the_trunk_leaves(name, n_bins):
    cfg = compose_config(f"model={name}").model
    mean, flat = (
        build_model(dataclasses.replace(cfg, frequency=f), 8, n_bins).eval()
        for f in ("mean", "flatten")
    )
    x = torch.randn(2, 1, n_bins, 90)
    _, channels, rows, _ = flat.trunk(x).shape
    assert rows > 1
    width = mean.embed(x).shape[1]  # channels, twice that for (attentive) statistics
    assert width in (channels, 2 * channels)
    assert flat.embed(x).shape == (2, width * rows)
    assert flat(x).shape == (2, 8)


def test_acnt_without_transformer_is_the_cnn_alone():
    cfg = compose_config("model=acnt").model
    with_t = build_model(cfg, 8, 64)
    without = build_model(dataclasses.replace(cfg, use_transformer=False), 8, 64)
    assert with_t.context.transformer is not None and without.context.transformer is None
    assert count_parameters(without) < count_parameters(with_t)
    assert without(torch.randn(2, 1, 64, 100)).shape == (2, 8)


@pytest.mark.parametrize("frequency", ["flatten", "mean"])
def test_sernet_context_sees_the_whole_clip_beside_the_blocks(frequency):
    cfg = dataclasses.replace(compose_config().model, frequency=frequency)
    blocks = build_model(cfg, 8, 40).eval()
    context = build_model(dataclasses.replace(cfg, use_transformer=True), 8, 40).eval()
    x = torch.randn(2, 1, 40, 251)
    width = blocks.head.collapse(blocks.trunk(x)).shape[1]
    assert context.trunk(x).shape == (2, width + cfg.d_model, 63)
    assert context.embed(x).shape == (2, 2 * (width + cfg.d_model))  # attentive statistics
    far = x.clone()
    far[..., 200:] = 0  # 3 s away from the first frames: beyond the blocks' 0.8 s
    torch.testing.assert_close(blocks.trunk(far)[..., 0], blocks.trunk(x)[..., 0])
    assert not torch.allclose(context.trunk(far)[:, width:, 0], context.trunk(x)[:, width:, 0])


def test_ensemble_trains_members_apart_and_predicts_their_mean_probability():
    cfg = dataclasses.replace(compose_config().model, members=3, dropout=0.0)
    ensemble = build_model(cfg, 8, 64)
    own = torch.randn(3, 2, 1, 64, 100)  # in training, each member sees its own batch
    logits = ensemble.train()(own)
    assert logits.shape == (3, 2, 8)  # one loss per member
    for member, x_m, z in zip(ensemble.members, own, logits, strict=True):
        torch.testing.assert_close(z, member(x_m))
    x = own[0]
    ensemble.eval()
    mean = torch.stack([member(x).softmax(dim=-1) for member in ensemble.members]).mean(dim=0)
    torch.testing.assert_close(ensemble(x).softmax(dim=-1), mean)
    first, second = (m.head.classify[1].weight for m in ensemble.members[:2])
    assert not torch.equal(first, second)  # independently initialised
    logits, embedding = ensemble.forward_with_embedding(x)
    torch.testing.assert_close(logits, ensemble(x))
    members = [member.embed(x) for member in ensemble.members]
    torch.testing.assert_close(embedding, torch.cat(members, dim=1))  # concatenated, in order


@pytest.mark.parametrize("pooling", ["mean", "stats", "attention"])
def test_time_pooling_variants_handle_any_length(pooling):
    cfg = dataclasses.replace(compose_config().model, pooling=pooling)
    model = build_model(cfg, 8, 64).eval()
    for frames in (40, 251, 500):
        assert model(torch.randn(2, 1, 64, frames)).shape == (2, 8)


def test_pretrained_resnet_without_weights_fails_clearly(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    cfg = dataclasses.replace(compose_config("model=resnet18").model, pretrained=True)
    with pytest.raises(KndError, match=r"model\.pretrained: cannot load ImageNet weights"):
        build_model(cfg, 8, 64)


def test_a_subsampled_pointwise_convolution_is_the_strided_one():
    strided = torch.nn.Conv2d(8, 16, 1, stride=(2, 1), bias=False)
    subsampled = SubsampledPointwise(8, 16, 1, stride=(2, 1), bias=False)
    subsampled.load_state_dict(strided.state_dict())  # the same parameters, by the same names
    x = torch.randn(2, 8, 9, 7)
    torch.testing.assert_close(subsampled(x), strided(x))


@pytest.mark.parametrize("channels", [[8, 16, 32, 64], [4, 8, 8, 16]])
def test_narrow_blocks_train(channels):
    """Training's channels-last layout, batch and input size: a strided 1x1 backward on 8 or fewer
    channels there crashed the process on AVX-512 CPUs (a crash fails this test)."""
    cfg = compose_config()
    model = build_model(dataclasses.replace(cfg.model, channels=channels), 8, 40)
    model.to(memory_format=torch.channels_last)
    x = torch.randn(32, 1, cfg.features.num_bins, cfg.features.num_frames)
    model(x.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
