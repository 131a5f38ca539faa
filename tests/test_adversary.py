"""Speaker-adversarial training: gradients reversed and ramped, a head that never ships."""

import pytest
import torch
from helpers.project import TINY, compose_config

from knd.config import ConfigError
from knd.data.processed import load_processed
from knd.training.adversary import SpeakerAdversary, reverse_gradient
from knd.training.train import Runtime, Trainer, train


def test_reverse_gradient_is_the_identity_forward_and_flips_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -0.5))


def test_the_network_is_pushed_to_hide_the_speaker_once_the_ramp_is_up():
    torch.manual_seed(0)
    adversary = SpeakerAdversary(dim=8, speakers=3, weight=1.0)
    embedding = torch.randn(6, 8, requires_grad=True)
    speakers = torch.tensor([0, 1, 2, 0, 1, 2])

    adversary.loss(embedding, speakers, speakers, 1.0, progress=0.0).backward()
    assert torch.count_nonzero(embedding.grad) == 0  # at first only the head learns
    assert adversary.head[0].weight.grad.abs().sum() > 0

    embedding.grad = None
    adversary.loss(embedding, speakers, speakers, 1.0, progress=1.0).backward()
    plain = torch.nn.functional.cross_entropy
    with torch.no_grad():  # a descent step of the network is an ascent of the speaker loss
        before = plain(adversary.head(embedding), speakers)
        after = plain(adversary.head(embedding - 0.1 * embedding.grad), speakers)
    assert after > before


def test_the_weight_cannot_be_negative():
    with pytest.raises(ConfigError, match=r"train\.speaker_adversary"):
        compose_config("train.speaker_adversary=-0.1")


def test_speakers_are_coded_over_the_training_actors_only(processed):
    cfg = compose_config(*TINY, "train.speaker_adversary=0.5")
    data = load_processed(processed)
    trainer = Trainer(cfg, data, Runtime.setup(cfg))
    train_actors = data.meta["speaker"].iloc[trainer.train_index.numpy()].nunique()
    codes = trainer.speaker[trainer.train_index]
    assert sorted(codes.unique().tolist()) == list(range(train_actors))
    others = torch.ones(len(data.meta), dtype=torch.bool)
    others[trainer.train_index] = False
    assert (trainer.speaker[others] == -1).all()
    assert trainer.adversary.head[-1].out_features == train_actors


@pytest.mark.slow
def test_the_adversary_trains_the_network_and_stays_out_of_the_checkpoint(processed, tmp_path):
    def run(name: str, *overrides: str) -> dict:
        out = tmp_path / name
        train(compose_config(*TINY, *overrides), processed, out / "model.pt", None, out / "last.pt")
        return torch.load(out / "model.pt", weights_only=True)

    plain, adversarial = run("plain"), run("adversarial", "train.speaker_adversary=1.0")
    assert plain["state_dict"].keys() == adversarial["state_dict"].keys()
    assert any(
        not torch.equal(plain["state_dict"][k], adversarial["state_dict"][k])
        for k in plain["state_dict"]
    )
    resumable = torch.load(tmp_path / "adversarial" / "last.pt", weights_only=False)
    assert set(resumable["adversary"]) == {
        "head.0.weight",
        "head.0.bias",
        "head.2.weight",
        "head.2.bias",
    }
