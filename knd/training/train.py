"""Stage `train`: fit on the training actors; keep the best (validation UAR) or the last epoch.

Reproducible by construction: every random draw of an epoch (shuffle, augmentation, dropout) is
seeded from `train.seed` and the epoch number, so the same seed gives the same model on a CPU,
and a run resumed from its last epoch (`train.resume`) ends exactly where an uninterrupted one
would. Mixed precision on CUDA and on CPUs with AMX; data-parallel under `torchrun`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from knd.config import Config, FeatureConfig, from_dict, to_dict
from knd.data.processed import Processed, load_processed
from knd.errors import KndError
from knd.files import replacing
from knd.metrics import classification_metrics, scalars
from knd.models.classifier import Classifier
from knd.models.networks import networks
from knd.paths import HELD_OUT_MODEL
from knd.training.adversary import SpeakerAdversary, embedding_dim, speaker_targets
from knd.training.augment import Augmenter, mixup_loss
from knd.training.evaluate import evaluate_split
from knd.training.finetune import hold_statistics, start_from

log = logging.getLogger(__name__)

LAST_STATE = Path("models/checkpoints/last.pt")


@dataclass
class Runtime:
    """Where this process trains: device, AMP, and its place in a distributed job."""

    device: torch.device
    amp: bool
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def platform(self) -> dict:
        """What the weights depend on besides the code and settings: the same seed gives the same
        model only with the same PyTorch build, device, CPU instruction set, thread count and
        precision (on AVX2 and AVX-512, one thread and two, or float32 and bfloat16, the kernels
        add in other orders, and training amplifies the difference)."""
        return {
            "torch": str(torch.__version__),
            "device": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else "cpu",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "processes": self.world_size,
            "mixed_precision": self.amp,
        }

    @classmethod
    def setup(cls, cfg: Config) -> Runtime:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        cuda = torch.cuda.is_available()
        amp = cfg.train.amp and (cuda or native_bfloat16())
        if world_size == 1:
            return cls(torch.device("cuda" if cuda else "cpu"), amp)
        local_rank = int(os.environ["LOCAL_RANK"])
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(local_rank)
        device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        return cls(device, amp, dist.get_rank(), world_size)


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX), where autocast was
    measured to pay: a training step a quarter quicker, at the same cross-validated accuracy.
    Other CPUs emulate it, or (AVX-512 BF16 alone) were not measured."""
    return getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def config_fingerprint(cfg: Config) -> str:
    """Identifies the settings a resumable state belongs to (all but `train.resume`)."""
    data = to_dict(cfg)
    data["train"].pop("resume")
    data["wandb"] = None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True
        )
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


def build_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    t = cfg.train
    if t.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=t.lr, epochs=t.epochs, steps_per_epoch=steps_per_epoch
        )
    if t.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=t.epochs * steps_per_epoch
        )
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=3
        )
    return None


class Trainer:
    def __init__(self, cfg: Config, data: Processed, rt: Runtime):
        self.cfg, self.data, self.rt = cfg, data, rt
        torch.manual_seed(cfg.train.seed)
        feature_cfg = from_dict(FeatureConfig, data.feature_config)
        self.model = Classifier(
            cfg.model, feature_cfg, data.labels, data.mean, data.std, data.encoder
        )
        # An encoder's hidden states are cached once: augmenting waveforms would mean running
        # the encoder every step, and SpecAugment's masks are made for spectrogram images.
        self.cached = feature_cfg.is_encoder
        if self.cached and (cfg.augment.waveform_enabled or cfg.augment.masks_enabled):
            log.warning(
                "features=%s: training on the cached encoder states; waveform augmentation and "
                "spectrogram masks are not applied (mixup is); augment=none turns them off",
                feature_cfg.kind,
            )
        init, freeze = cfg.train.init_from, cfg.train.freeze_encoder
        self.init_from = start_from(self.model, init, freeze) if init else None
        # channels-last convolutions are 1.5-2.5x faster on CPUs and tensor cores alike
        self.model.to(rt.device, memory_format=torch.channels_last)
        self.net = self.model.net
        if rt.world_size > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model.net)
        self.augmenter = Augmenter(cfg.augment, feature_cfg.sample_rate)
        self.train_index = data.indices("train")
        if len(self.train_index) == 0:
            raise KndError("train: the training split is empty; check the split settings")
        per_rank = len(self.train_index) // rt.world_size
        self.steps = max(1, per_rank // cfg.train.batch_size)
        trainable = [p for p in self.model.net.parameters() if p.requires_grad]
        self.adversary = None
        if cfg.train.speaker_adversary:
            if rt.world_size > 1:
                raise KndError("train.speaker_adversary: not supported under torchrun; set it to 0")
            if cfg.model.members > 1:
                raise KndError(
                    "train.speaker_adversary: needs model.members=1 (each member of an ensemble "
                    "trains on batches of its own); set one of them back"
                )
            self.speaker, actors = speaker_targets(data.meta["speaker"], self.train_index)
            self.adversary = SpeakerAdversary(
                embedding_dim(self.model.net), actors, cfg.train.speaker_adversary
            ).to(rt.device)
            trainable += list(self.adversary.parameters())
        self.optimizer = build_optimizer(cfg, trainable)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps)
        # float16 needs its gradients scaled; the CPU's bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler(enabled=rt.amp and rt.device.type == "cuda")
        self.loss = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.epoch, self.best_uar, self.best_epoch, self.history = 0, -1.0, 0, []
        self.best_state: dict[str, torch.Tensor] = {}

    # -- one epoch -------------------------------------------------------------------------
    def batches(self, gen: torch.Generator):
        """This rank's share of a seeded shuffle; the last partial batch is dropped (BatchNorm)."""
        order = self.train_index[torch.randperm(len(self.train_index), generator=gen)]
        order = order[self.rt.rank :: self.rt.world_size]
        bs = self.cfg.train.batch_size
        return [order[i * bs : (i + 1) * bs] for i in range(self.steps)]

    def inputs(self, index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device, aug = self.rt.device, self.augmenter
        if self.cached:
            return self.model.normalise(self.data.features[index].to(device))
        if self.cfg.augment.waveform_enabled:
            waves = aug.waveform(self.data.waves(index), gen).to(device)
            features = self.model.front_end(waves)
        else:
            features = self.data.features[index].to(device)
        x = aug.spectrogram(self.model.normalise(features), gen)
        return x.contiguous(memory_format=torch.channels_last)

    def train_epoch(self) -> float:
        cfg = self.cfg.train
        gen = seed_everything(cfg.seed * 1000 + self.epoch)
        # Each further member of an ensemble draws its own batches, augmentation and mixing:
        # trained on the same ones, members agree too much for their average to gain.
        gens = [gen] + [
            torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
            for _ in range(self.cfg.model.members - 1)
        ]
        self.net.train()
        if cfg.freeze_encoder:
            hold_statistics(self.model.net)
        losses = []
        bar = tqdm(
            list(zip(*(self.batches(g) for g in gens), strict=True)),
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=None if self.rt.main else True,
        )
        for step, indices in enumerate(bar):
            mixed = [self.mixed_batch(index, g) for index, g in zip(indices, gens, strict=True)]
            x = mixed[0][0] if len(mixed) == 1 else torch.stack([m[0] for m in mixed])
            with torch.autocast(self.rt.device.type, enabled=self.rt.amp):
                if self.adversary is None:
                    logits = self.net(x)
                else:
                    logits, embedding = self.net.forward_with_embedding(x)
                    progress = (self.epoch + step / self.steps) / cfg.epochs
                    ((_, y_a, y_b, lam),) = mixed  # one network: speakers in a second column
                    (y_a, s_a), (y_b, s_b) = y_a.unbind(1), y_b.unbind(1)
                    mixed = [(x, y_a, y_b, lam)]
                    adversary = self.adversary.loss(embedding, s_a, s_b, lam, progress)
                member_logits = [logits] if len(mixed) == 1 else logits.unbind(0)
                # summed, so each member learns at the rate it would alone
                loss = sum(
                    mixup_loss(self.loss, z, y_a, y_b, lam)
                    for z, (_, y_a, y_b, lam) in zip(member_logits, mixed, strict=True)
                )
            losses.append(loss.item() / len(mixed))  # comparable with or without adversary
            if self.adversary is not None:
                loss = loss + adversary
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                for member in networks(self.model.net):
                    nn.utils.clip_grad_norm_(member.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None and cfg.scheduler in ("onecycle", "cosine"):
                self.scheduler.step()
            bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}")
        return sum(losses) / len(losses)

    def mixed_batch(self, index: torch.Tensor, gen: torch.Generator) -> tuple:
        """One batch's inputs, mixed up: `(x, targets a, targets b, blend weight)`."""
        x = self.inputs(index, gen)
        y = self.data.target[index]
        if self.adversary is not None:  # speakers ride along as a second target column
            y = torch.stack([y, self.speaker[index]], dim=1)
        return self.augmenter.mixup(x, y.to(self.rt.device), gen)

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation scores: whole clips, in windows, as `predict` scores them; with an encoder,
        its cached centre windows (scoring whole clips would run the encoder every epoch)."""
        if not self.cached:
            return evaluate_split(self.model, self.data, "val")
        index = self.data.indices("val")
        self.model.eval()
        logits = [
            self.model.net(self.model.normalise(self.data.features[chunk].to(self.rt.device)))
            for chunk in index.split(self.cfg.train.batch_size)
        ]
        return classification_metrics(
            torch.cat(logits).cpu(), self.data.target[index], self.data.labels
        )

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "fingerprint": config_fingerprint(self.cfg),
            "epoch": self.epoch,
            "best_uar": self.best_uar,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "best_state": self.best_state,
            "net": self.model.net.state_dict(),  # the rest (front end, statistics) is the data's
            "adversary": self.adversary.state_dict() if self.adversary else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
        }

    def restore(self, path: Path) -> bool:
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.rt.device, weights_only=False)
        if state["fingerprint"] != config_fingerprint(self.cfg):
            log.warning("resume: %s belongs to other settings; starting from scratch", path)
            return False
        self.model.net.load_state_dict(state["net"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_uar = state["epoch"], state["best_uar"]
        self.best_epoch, self.history = state["best_epoch"], state["history"]
        self.best_state = state["best_state"]
        log.info("resume: continuing after epoch %d from %s", self.epoch, path)
        return True


def train(
    cfg: Config,
    data_dir: Path = Path("data/processed"),
    model_path: Path = HELD_OUT_MODEL,
    live_dir: Path = Path("dvclive"),
    state_path: Path = LAST_STATE,
) -> dict:
    return fit(cfg, load_processed(data_dir), model_path, live_dir, state_path)


def fit(
    cfg: Config,
    data: Processed,
    model_path: Path,
    live_dir: Path | None,
    state_path: Path,
    temperature: float = 1.0,
    job_type: str = "train",
    **extra,
) -> dict:
    """Train on `data`'s train split, validate on its val split, save the selected epoch.

    The saved model's logits are divided by `temperature` (a release may take the one fitted on the
    held-out model's test actors).
    Without a val split only the last epoch can be kept and nothing can stop early. `extra` goes
    into the checkpoint.
    """
    validate = len(data.indices("val")) > 0
    needs = cfg.train.needs_validation
    if not validate and needs:
        raise KndError(
            f"train: with no validation actors, {', '.join(needs)} have no scores to act on; set "
            "train.select=last, train.patience=0 and a schedule other than plateau"
        )
    rt = Runtime.setup(cfg)
    trainer = Trainer(cfg, data, rt)
    resumed = cfg.train.resume and trainer.restore(state_path)
    live = tracker = None
    if rt.main:
        from knd.training.tracking import Tracker

        if live_dir is not None:
            from dvclive import Live

            live = Live(
                str(live_dir), resume=resumed, dvcyaml=None, save_dvc_exp=False, report=None
            )
        tracker = Tracker(cfg, job_type)
    bad_epochs = trainer.epoch - trainer.best_epoch
    while trainer.epoch < cfg.train.epochs:
        loss = trainer.train_epoch()
        trainer.epoch += 1
        decided = torch.zeros(2, dtype=torch.float64)  # by rank 0: [validation UAR, stop]
        if rt.main:
            val = scalars(trainer.validate()) if validate else {}
            if cfg.train.scheduler == "plateau":
                trainer.scheduler.step(val["uar"])
            row = {
                "epoch": trainer.epoch,
                "train_loss": round(loss, 5),
                "lr": trainer.optimizer.param_groups[0]["lr"],
            }
            row |= {f"val_{k}": round(v, 5) for k, v in val.items()}
            trainer.history.append(row)
            _log_epoch(live, tracker, row)
            if val and val["uar"] > trainer.best_uar:
                trainer.best_uar, trainer.best_epoch, bad_epochs = val["uar"], trainer.epoch, 0
                if cfg.train.select == "best":  # `last` needs no copy (nor its save every epoch)
                    trainer.best_state = {
                        k: v.detach().clone() for k, v in trainer.model.net.state_dict().items()
                    }
            else:
                bad_epochs += 1
            scores = f"  val uar {val['uar']:.4f}  acc {val['accuracy']:.4f}" if val else ""
            best = "  *best" if trainer.best_epoch == trainer.epoch else ""
            log.info(
                "epoch %3d/%d  loss %.4f%s%s", trainer.epoch, cfg.train.epochs, loss, scores, best
            )
            with replacing(state_path) as tmp:
                torch.save(trainer.state(), tmp)
            decided[0] = val.get("uar", 0.0)
            decided[1] = float(cfg.train.patience and bad_epochs >= cfg.train.patience)
        if rt.world_size > 1:
            dist.broadcast(decided, src=0)
            # rank 0 stepped before logging; the others follow its UAR, or their rates diverge
            if cfg.train.scheduler == "plateau" and not rt.main:
                trainer.scheduler.step(decided[0].item())
        if decided[1].item():
            if rt.main:
                log.info("early stop: no validation UAR gain for %d epochs", cfg.train.patience)
            break
    selected = trainer.best_epoch if cfg.train.select == "best" else trainer.epoch
    result = {
        "best_epoch": trainer.best_epoch,
        "best_val_uar": trainer.best_uar,
        "selected_epoch": selected,
    }
    if rt.main:
        if cfg.train.select == "best":
            trainer.model.net.load_state_dict(trainer.best_state)
        validation = trainer.history[selected - 1]
        trainer.model.temperature.fill_(temperature)
        result["temperature"] = round(temperature, 4)
        trainer.model.save(
            model_path,
            split_strategy=data.split_strategy,
            train_config=to_dict(cfg.train),
            validation=validation,
            history=trainer.history,
            trained_on_actors=sorted(set(data.meta["speaker"].iloc[trainer.train_index].tolist())),
            trained_with=rt.platform(),
            init_from=trainer.init_from,
            **extra,
        )
        scores = f": val uar {validation['val_uar']:.4f}" if validate else ""
        log.info(
            "%s epoch %d%s, temperature %.3f -> %s",
            cfg.train.select,
            selected,
            scores,
            temperature,
            model_path,
        )
        tracker.summary(result)
        tracker.log_model(model_path, result)
        tracker.finish()
        if live is not None:
            live.end()
    if rt.world_size > 1:
        dist.barrier()
        del trainer  # DDP's reducer must go before its process group, or gloo hangs at exit
        dist.destroy_process_group()
    return result


def _log_epoch(live, tracker, row: dict) -> None:
    if live is not None:
        for key, value in row.items():
            if key != "epoch":
                live.log_metric(key.replace("_", "/", 1), value)
        live.next_step()
    tracker.log(row, step=row["epoch"])
