"""The training loop behind ``edgeseg train``.

One function, ``train(config)``, from a dataset folder to ``last.pt`` and ``best.pt``
(best by validation mIoU) plus a JSON-lines metrics log. Runs on CPU or CUDA
(AMP and channels-last there), alone or under ``torchrun`` with DDP.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from edgeseg.sizes import parse_size  # noqa: F401 (edgeseg.train.parse_size)
from edgeseg.errors import ConfigError, DataError
from edgeseg.train import distributed as dist
from edgeseg.train.checkpoint import (atomic_write_text, load_checkpoint, make_checkpoint,
                                      save_checkpoint, unwrap)
from edgeseg.train.schedule import SCHEDULES, build_scheduler

#: defaults per optimizer; "adam" is Adam with L2 weight decay added to the gradient (the
#: DABNet paper's optimizer), "adamw" decouples the decay
OPTIMIZERS = {"adamw": {"lr": 2e-3, "weight_decay": 1e-4}, "adam": {"lr": 1e-3, "weight_decay": 2e-4},
              "sgd": {"lr": 1e-2, "weight_decay": 5e-4}}


@dataclass
class TrainConfig:
    model: str
    data: str
    epochs: int = 100
    img_size: tuple[int, int] | None = None  # training crop; default: the images' size rounded up to the stride
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float | None = None  # default per optimizer (OPTIMIZERS)
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "poly"
    warmup_epochs: float = 1.0
    loss: str = "ce"
    out: str = "runs/train"
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    patience: int = 0  # early stopping: epochs without a better val mIoU (0 = off)
    amp: bool = True  # CUDA only
    #: training on a CPU: "auto" (bf16 autocast + channels-last where the CPU has bf16: AMX or
    #: AVX-512 BF16; tools/bench_train_step.py measures it), "bf16", or "fp32" (plain)
    cpu_precision: str = "auto"
    sync_bn: bool = False
    val_every: int = 1
    data_format: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    # A dataset without a val split: hold out this share of train (default 0.1), grouped by name prefix.
    val_fraction: float | None = None
    val_group: str = "auto"  # auto (name prefix when the names carry one), none, or a regex
    holdout: dict | None = None  # the held-out image ids, chosen once and kept for resume/eval/build
    holdout_val: bool = False  # hold out val from train_split even where the dataset has a val split
    holdout_groups: list[str] | None = None  # hold out exactly these groups (e.g. ["0001TP"]); implies holdout_val
    #: start from this checkpoint's weights with a fresh optimizer and schedule: a second phase
    #: (e.g. full-resolution crops after a low-resolution phase); its hold-out is kept
    init_from: str | None = None
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    rotate: float = 0.0
    elastic: bool = False
    color_jitter: bool = True
    model_kwargs: dict = field(default_factory=dict)
    #: your own model's input convention: {"mean": [..], "std": [..], "range": 1 | 255} in its
    #: channel order (edgeseg.models.own.input_descriptor); kept in the checkpoints' descriptor
    model_input: dict | None = None
    steps_per_epoch: int = 0  # 0 = one pass over the training set
    progress: bool = True
    #: an exponential moving average of the weights (and BatchNorm statistics) with this decay per
    #: step, scored beside the raw weights at every evaluation and kept in the checkpoints; 0 = off
    ema_decay: float = 0.0

    def validate(self) -> None:
        for name in _NUMBERS:  # from a recipe or an option: a real number first, then its range
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)):
                raise ConfigError(f"{name} must be a finite number, got {v!r}: fix the recipe or the option")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be at least 0 and below 1, got {self.momentum}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}': use one of {', '.join(SCHEDULES)}")
        if self.lr is not None and not (0 < self.lr < 10):
            raise ConfigError(f"--lr must be a positive rate below 10, got {self.lr}")
        if self.img_size is not None and (len(self.img_size) != 2 or min(self.img_size) < 1):
            raise ConfigError(f"--img-size must be HxW with positive numbers, got {self.img_size}")
        if self.steps_per_epoch < 0:
            raise ConfigError(f"--steps-per-epoch must be 0 (one pass over the data) or more, got {self.steps_per_epoch}")
        if self.val_every < 1:
            raise ConfigError(f"--val-every must be at least 1 (validate every N epochs), got {self.val_every}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (load in the main process) or more, got {self.workers}")
        if self.patience < 0:
            raise ConfigError(f"--patience must be 0 (off) or more, got {self.patience}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be 0 or more, got {self.warmup_epochs}")
        if self.cpu_precision not in CPU_PRECISIONS:
            raise ConfigError(f"--cpu-precision must be one of {', '.join(CPU_PRECISIONS)}, got {self.cpu_precision!r}")
        if self.holdout_groups is not None and (not isinstance(self.holdout_groups, (list, tuple)) or not all(
                isinstance(g, str) and g for g in self.holdout_groups)):
            raise ConfigError(f"holdout_groups must be a list of group names such as [0001TP], got {self.holdout_groups!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must be 0 (off) or a decay below 1 (e.g. 0.999), got {self.ema_decay}")
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be between 0 and 1 (e.g. 0.1), got {self.val_fraction}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.img_size is not None:
            cfg.img_size = tuple(cfg.img_size)
        cfg.scale = tuple(cfg.scale)
        return cfg


#: TrainConfig's numeric fields (#31: a NaN weight decay trained to NaN weights)
_NUMBERS = ("epochs", "batch_size", "lr", "weight_decay", "momentum", "warmup_epochs", "rotate", "ema_decay",
            "val_fraction", "steps_per_epoch", "val_every", "workers", "patience", "seed")

RUN_FILES = ("last.pt", "best.pt", "ema.pt", "metrics.jsonl")


def holds_run(folder) -> bool:
    """Whether ``folder`` already holds a training run (a new run there would mix with it)."""
    return any((Path(folder) / name).exists() for name in RUN_FILES)


def free_run_dir(base) -> str:
    """``base``, or ``base-2``, ``base-3``... the first that holds no run (the default --out)."""
    candidate, n = Path(base), 1
    while holds_run(candidate):
        n += 1
        candidate = Path(f"{base}-{n}")
    return str(candidate)


CPU_PRECISIONS = ("auto", "bf16", "fp32")


def cpu_training_path(choice: str) -> dict:
    """How a CPU run computes: ``{"precision": "bf16" | "fp32", "channels_last": bool, "why": ...}``.
    auto takes bf16 autocast with channels-last tensors only where the CPU has AMX: measured with
    tools/bench_train_step.py, bf16 trains 1.3-1.7x faster than fp32 with AMX, but 0.73-1.02x on
    AVX-512 BF16 without it (oneDNN's bf16 kernels there are no faster than fp32 and autocast adds
    casts), and where the CPU has no bf16 at all autocast emulates it."""
    from edgeseg.machine import cpu_isa

    isa = cpu_isa()
    has, amx = bool(isa["bf16"]), "amx_bf16" in isa["flags"]
    if choice == "fp32":
        return {"precision": "fp32", "channels_last": False, "why": "--cpu-precision fp32"}
    if choice == "bf16" and not has:
        raise ConfigError("--cpu-precision bf16 needs a CPU with bf16 (AMX or AVX-512 BF16), and this one has none: "
                          "use auto or fp32")
    if choice == "bf16":
        return {"precision": "bf16", "channels_last": True, "why": "--cpu-precision bf16"}
    if amx:
        return {"precision": "bf16", "channels_last": True, "why": "auto: this CPU has AMX, where bf16 trains faster"}
    if has:
        return {"precision": "fp32", "channels_last": False,
                "why": "auto: this CPU has AVX-512 BF16 but no AMX, where bf16 measured slower than fp32"}
    return {"precision": "fp32", "channels_last": False, "why": "auto: this CPU has no bf16"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible to PyTorch: use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{name}': use cpu, cuda or cuda:N") from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    # Distinct, reproducible augmentation streams per worker (albumentations uses numpy/random).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def pad_collate(batch, ignore_index: int = 255, divisor: int = 1):
    """Stack (image, mask) pairs of possibly different sizes, padding bottom/right
    (image with 0 = the mean colour after normalisation, mask with ignore)."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    h, w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    images = torch.zeros(len(batch), batch[0][0].shape[0], h, w, dtype=batch[0][0].dtype)
    masks = torch.full((len(batch), h, w), ignore_index, dtype=torch.long)
    for i, (img, mask) in enumerate(batch):
        images[i, :, : img.shape[-2], : img.shape[-1]] = img
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks


def check_dataset(dataset, what: str) -> None:
    """Read every sample once before training starts, so bad files stop the run at
    once, with one clear message, before anything is written."""
    if len(dataset) == 0:
        raise DataError(f"{what} split is empty: check the dataset folder")
    for i in range(len(dataset)):
        dataset.read(i)


def build_optimizer(model, cfg: TrainConfig):
    defaults = OPTIMIZERS[cfg.optimizer]
    lr = cfg.lr if cfg.lr is not None else defaults["lr"]
    wd = cfg.weight_decay if cfg.weight_decay is not None else defaults["weight_decay"]
    # No weight decay on norms and biases: decaying them only hurts.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


class WeightAverage:
    """An exponential moving average of a model's state (weights and BatchNorm statistics).

    ``update()`` after each optimizer step; ``model`` is a copy scored and saved like the raw one.
    The first steps use a shorter horizon (``min(decay, (1 + n) / (10 + n))``) so the average
    does not start weighted towards the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        import copy

        self.model = copy.deepcopy(unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, updates

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = unwrap(model).state_dict()
        for name, avg in self.model.state_dict().items():
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(live[name].detach(), alpha=1 - d)
            else:  # BatchNorm's step counter
                avg.copy_(live[name])


@torch.no_grad()
def evaluate_model(model, loader, num_classes: int, ignore_index: int, device, amp: bool = False):
    """Confusion matrix of ``model`` over ``loader``, summed over DDP ranks."""
    from edgeseg.metrics import score

    model.eval()

    def predict(images):
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            return model(images.to(device, non_blocking=True)).argmax(1).cpu()

    cm = score(loader, predict, num_classes, ignore_index)
    total = dist.all_reduce_sum(torch.from_numpy(cm.matrix.copy()))
    cm.matrix[...] = total.numpy()
    return cm


def _rng_state() -> dict:
    # numpy's state as a tensor and numbers: last.pt holds plain data only (loaded with weights_only)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Progress:
    """A rich progress bar on the main process only (plain loop elsewhere)."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def task(self, description: str, total: int):
        return self.bar.add_task(description, total=total, info="") if self.bar else None

    def advance(self, task, info: str = ""):
        if self.bar:
            self.bar.update(task, advance=1, info=info)

    def done(self, task):
        if self.bar:
            self.bar.remove_task(task)


def _edgeseg_checkpoint_or_none(path) -> dict | None:
    """The edgeseg checkpoint at ``path`` (read once), or None for another file (a plain state dict)."""
    if Path(path).suffix != ".pt":
        return None
    try:
        return load_checkpoint(path)
    except Exception:
        return None


def _init_weights(cfg: TrainConfig, log) -> dict:
    """The checkpoint a new phase starts from (weights only, loaded without running code);
    the run takes its model and, where it held images out, the same hold-out, so the second
    phase never trains on the images the first one was scored on."""
    from edgeseg.data.holdout import holdout_of
    from edgeseg.models import own

    from edgeseg import zoo

    if not Path(cfg.init_from).exists() and zoo.is_zoo_name(cfg.init_from):
        ckpt = zoo.load_zoo_checkpoint(cfg.init_from)
    elif own.is_own_spec(cfg.model):
        ckpt = _edgeseg_checkpoint_or_none(cfg.init_from)
        if ckpt is None:  # your own model's published weights: a plain state dict of its network
            from edgeseg.files import load_state_dict_file

            return {"plain_state": load_state_dict_file(cfg.init_from)}
    else:
        ckpt = load_checkpoint(cfg.init_from)
    model = ckpt.get("model") or {}
    if not isinstance(model, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ConfigError(f"--init-from '{cfg.init_from}' is not an edgeseg checkpoint (no model / state_dict)")
    if model.get("name") != cfg.model or dict(model.get("kwargs") or {}) != dict(cfg.model_kwargs):
        raise ConfigError(f"--init-from '{cfg.init_from}' holds {model.get('name')} {model.get('kwargs') or ''}, not "
                          f"{cfg.model} {cfg.model_kwargs or ''}: pass the same --model and --model-arg")
    if ckpt.get("quantization") or ckpt.get("pruning"):
        raise ConfigError(f"--init-from '{cfg.init_from}' is a compressed checkpoint: start from a float one")
    holdout = holdout_of(ckpt)
    if holdout is not None and cfg.holdout is None:
        if cfg.train_split != holdout["from"]:
            raise ConfigError(f"--init-from '{cfg.init_from}' was trained with images held out of "
                              f"'{holdout['from']}': pass --train-split {holdout['from']} so the same images stay out")
        if cfg.holdout_groups and sorted(cfg.holdout_groups) != sorted(holdout.get("groups") or []):
            raise ConfigError(f"--init-from '{cfg.init_from}' held out {', '.join(holdout.get('groups') or ['single images'])}"
                              f", not {', '.join(cfg.holdout_groups)}: drop --holdout-groups (the hold-out is kept)")
        cfg.holdout = holdout
        log(f"--init-from: keeping its hold-out ({len(holdout['val'])} images"
            f"{' of ' + ', '.join(holdout['groups']) if holdout.get('groups') else ''})")
    return ckpt


def open_train_val(cfg: TrainConfig, log=print):
    """The training and validation sets; a dataset with no val split gets a seeded hold-out of train."""
    from edgeseg.data import available_splits, open_dataset
    from edgeseg.data.holdout import describe_holdout, make_holdout, open_joined, open_split, valid_holdout

    if cfg.holdout is not None and valid_holdout(cfg.holdout) is None:  # a stranger's last.pt
        raise ConfigError("the run's config holds a malformed 'holdout' (it needs 'from' and a list of image ids "
                          "in 'val'): resume from a last.pt written by `edgeseg train`")
    if cfg.holdout is None:
        has_val = cfg.val_split in available_splits(cfg.data, cfg.data_format)
        if has_val and not (cfg.holdout_val or cfg.holdout_groups):
            if cfg.val_fraction is not None:
                raise ConfigError(f"dataset '{cfg.data}' has a '{cfg.val_split}' split, so no images are held out: "
                                  f"drop --val-fraction, or add --holdout-val to hold out images anyway")
            return (open_joined(cfg.data, cfg.train_split, fmt=cfg.data_format, must=True),
                    open_dataset(cfg.data, cfg.val_split, fmt=cfg.data_format))
        base = open_joined(cfg.data, cfg.train_split, fmt=cfg.data_format, must=True)
        cfg.holdout = make_holdout([base.image_id(i) for i in range(len(base))], cfg.val_fraction, seed=cfg.seed,
                                   group_by=cfg.val_group, from_split=cfg.train_split, split=cfg.val_split,
                                   groups=cfg.holdout_groups)
        cfg.holdout["forced"] = has_val  # its 'val' replaces the dataset's own
        how = "--holdout-groups" if cfg.holdout_groups else "--holdout-val"
        why = (f"{how}, in place of the dataset's own '{cfg.val_split}'" if has_val
               else f"no '{cfg.val_split}' split in {cfg.data}")
        log(f"{why}: {describe_holdout(cfg.holdout, len(base))} "
            f"(--val-fraction, --val-group; the list is kept in {Path(cfg.out) / 'config.json'})")
        if cfg.holdout.get("note"):
            log(f"note: {cfg.holdout['note']}")
    return (open_split(cfg.data, cfg.train_split, cfg.holdout, fmt=cfg.data_format),
            open_split(cfg.data, cfg.val_split, cfg.holdout, fmt=cfg.data_format))


def train(cfg: TrainConfig, resume: str | Path | None = None, log=print) -> dict:
    """Train a model; returns ``{"best_miou", "best_epoch", "epochs", "out", "model"}``."""
    from edgeseg.data import build_eval_transform, build_train_transform
    from edgeseg.losses import build_loss, parse_loss_spec
    from edgeseg.models import create_model, get_entry, own

    start_epoch, best_miou, best_epoch, state, sitting = 0, -1.0, -1, None, 1
    if resume is not None:
        state = load_checkpoint(resume)
        if "train_state" not in state:
            raise ConfigError(f"'{resume}' holds weights only (no optimizer state): resume from a last.pt "
                              f"written by `edgeseg train`")
        saved = TrainConfig.from_dict(state["config"])
        # Only the length of training and where to write may change on resume.
        if cfg.epochs:
            saved.epochs = cfg.epochs
        saved.out, saved.progress, saved.workers = cfg.out or saved.out, cfg.progress, cfg.workers
        cfg = saved
        start_epoch = state["train_state"]["epoch"] + 1
        best_miou, best_epoch = state["train_state"]["best_miou"], state["train_state"]["best_epoch"]
        # which start of the run this is: a long schedule may run in several sittings
        sitting = int(state["train_state"].get("sitting", 1)) + 1
    cfg.validate()
    init = _init_weights(cfg, log) if state is None and cfg.init_from else None
    if state is None and holds_run(cfg.out):
        raise ConfigError(f"--out '{cfg.out}' already holds a training run (last.pt / metrics.jsonl): continue it "
                          f"with --resume {Path(cfg.out) / 'last.pt'}, or give another --out")
    # Bad names fail before any data is read.
    if cfg.loss != "auto":
        parse_loss_spec(cfg.loss)
    if own.is_own_spec(cfg.model):
        own.resolve(cfg.model)  # allowed on the command line (a resumed run's config names code too)
    elif str(cfg.model).lower().endswith(".onnx"):
        raise ConfigError(f"'{cfg.model}' is an ONNX model, which cannot be trained here: train its PyTorch code "
                          f"(--model FILE.py:FACTORY), or build the file as it is (edgeseg build {cfg.model})")
    else:
        get_entry(cfg.model)

    device = dist.setup(resolve_device(cfg.device))
    main_proc = dist.is_main()
    seed_everything(cfg.seed + dist.rank())

    train_set, val_set = open_train_val(cfg, log if main_proc else (lambda *_: None))
    info = train_set.info
    info.check_compatible(val_set.info, f"validation split '{cfg.val_split}'")
    if cfg.model_input:  # the model's own normalisation: the loaders and the checkpoints use it
        info = own.input_descriptor(info, cfg.model_input.get("mean"), cfg.model_input.get("std"),
                                    cfg.model_input.get("range", 1.0), bool(cfg.model_kwargs.get("bgr")))
        train_set.info = val_set.info = info
    check_dataset(train_set, f"training ({cfg.data}/{cfg.train_split})")
    check_dataset(val_set, f"validation ({cfg.data}/{cfg.val_split})")

    model = create_model(cfg.model, info.num_classes, **cfg.model_kwargs)
    if cfg.img_size is None:
        h, w = train_set.read(0)[0].shape[:2]
        cfg.img_size = (model.valid_size(h), model.valid_size(w))
    model.check_input_size(*cfg.img_size)

    class_counts = None
    if cfg.loss == "auto":  # chosen from the training masks, then kept in the config as a plain spec
        from edgeseg.data import class_pixel_counts
        from edgeseg.losses import suggest_loss

        class_counts = class_pixel_counts(train_set, info.num_classes)
        cfg.loss, why = suggest_loss(class_counts, info.classes)
        if main_proc:
            log(f"--loss auto: {cfg.loss} ({why})")
    if any(name == "wce" for _, name, _ in parse_loss_spec(cfg.loss)):
        from edgeseg.data import class_pixel_counts

        if class_counts is None:
            class_counts = class_pixel_counts(train_set, info.num_classes)
    criterion = build_loss(cfg.loss, info.num_classes, ignore_index=info.ignore_index, class_counts=class_counts)

    train_set.transform = build_train_transform(cfg.img_size, scale=cfg.scale, hflip=cfg.hflip, rotate=cfg.rotate,
                                                elastic=cfg.elastic, color_jitter=cfg.color_jitter,
                                                ignore_index=info.ignore_index)
    val_set.transform = build_eval_transform(divisor=model.size_divisor, ignore_index=info.ignore_index)

    use_cuda = device.type == "cuda"
    amp = cfg.amp and use_cuda
    cpu_path = None if use_cuda else cpu_training_path(cfg.cpu_precision)
    cpu_bf16 = bool(cpu_path and cpu_path["precision"] == "bf16")
    channels_last = use_cuda or bool(cpu_path and cpu_path["channels_last"])
    if cpu_path and main_proc:
        log(f"training on the CPU in {cpu_path['precision']}{' with channels-last tensors' if channels_last else ''} "
            f"({cpu_path['why']})")
    if cfg.sync_bn and dist.world_size() > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if state is not None:
        unwrap(model).load_state_dict(state["state_dict"])
    elif init is not None and "plain_state" in init:
        own.load_plain_weights(unwrap(model), init["plain_state"], cfg.init_from)
    elif init is not None:
        try:
            unwrap(model).load_state_dict(init["state_dict"])
        except RuntimeError as exc:
            raise ConfigError(f"--init-from '{cfg.init_from}' does not fit {cfg.model} with {info.num_classes} "
                              f"classes ({str(exc).splitlines()[0]}): give a checkpoint of the same model") from None

    train_sampler = DistributedSampler(train_set, seed=cfg.seed, drop_last=True) if dist.world_size() > 1 else None
    val_sampler = DistributedSampler(val_set, shuffle=False) if dist.world_size() > 1 else None
    per_rank_batch = max(1, cfg.batch_size // dist.world_size())
    # BatchNorm cannot train on a batch of one; drop a last short batch.
    drop_last = len(train_set) // dist.world_size() > per_rank_batch
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, batch_size=per_rank_batch, shuffle=train_sampler is None,
                              sampler=train_sampler, num_workers=cfg.workers, pin_memory=use_cuda,
                              drop_last=drop_last, worker_init_fn=_worker_init, generator=generator,
                              persistent_workers=cfg.workers > 0)
    val_loader = DataLoader(val_set, batch_size=per_rank_batch, sampler=val_sampler, num_workers=cfg.workers,
                            collate_fn=partial(pad_collate, ignore_index=info.ignore_index,
                                               divisor=unwrap(model).size_divisor),
                            pin_memory=use_cuda)

    steps_per_epoch = cfg.steps_per_epoch or len(train_loader)
    if steps_per_epoch == 0:
        raise DataError(f"training split of '{cfg.data}' has fewer images than one batch: lower --batch-size")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs * steps_per_epoch,
                                int(cfg.warmup_epochs * steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if state is not None:
        ts = state["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        _set_rng_state(ts["rng"])
    ema = None
    if cfg.ema_decay:
        ema = WeightAverage(model, cfg.ema_decay)
        if state is not None and isinstance(state.get("ema_state_dict"), dict):
            ema.model.load_state_dict(state["ema_state_dict"])
            ema.updates = int(state["train_state"].get("ema_updates", 0))
    ddp_model = model
    if dist.world_size() > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if use_cuda else None)

    out = Path(cfg.out)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # half-written checkpoints of a run that was killed (kill -9)
            if stale.is_file():
                stale.unlink()
        atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2, default=list) + "\n")
        log(f"training {cfg.model} on {cfg.data} ({len(train_set)} train / {len(val_set)} val images, "
            f"{info.num_classes} classes) at {cfg.img_size[0]}x{cfg.img_size[1]} on {device}"
            f"{' x' + str(dist.world_size()) if dist.world_size() > 1 else ''} -> {out}")

    stale = 0 if best_epoch < 0 else start_epoch - 1 - best_epoch
    epoch = start_epoch - 1
    with _Progress(cfg.progress and main_proc) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            if train_sampler is not None:
                train_sampler.set_epoch(epoch)
            ddp_model.train()
            task = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch)
            loss_sum, seen, step = 0.0, 0, 0
            while step < steps_per_epoch:
                for images, masks in train_loader:
                    images = images.to(device, non_blocking=True)
                    masks = masks.to(device, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=torch.bfloat16 if cpu_bf16 else None,
                                        enabled=amp or cpu_bf16):
                        outputs = ddp_model(images)
                        loss = criterion(outputs, masks)
                    if not torch.isfinite(loss):
                        hint = ", or train in fp32 (--cpu-precision fp32)" if cpu_bf16 else ""
                        raise ConfigError(f"the loss became {loss.item()} at epoch {epoch + 1}: "
                                          f"lower --lr or check the labels{hint}")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None:
                        ema.update(model)
                    loss_sum += loss.item()
                    seen += 1
                    step += 1
                    progress.advance(task, f"loss {loss_sum / seen:.4f}")
                    if step >= steps_per_epoch:
                        break
            progress.done(task)

            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                      "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": round(time.time() - t0, 2),
                      "compute": cpu_path["precision"] if cpu_path else ("amp" if amp else "fp32"),
                      "sitting": sitting}
            improved = False
            t_val = time.time()
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                cm = evaluate_model(ddp_model, val_loader, info.num_classes, info.ignore_index, device, amp)
                summary = cm.summary(info.classes)
                record.update({"val_miou": summary["miou"], "val_pixel_accuracy": summary["pixel_accuracy"],
                               "val_per_class_iou": summary["per_class_iou"],
                               "val_time_s": round(time.time() - t_val, 2)})
                if ema is not None:
                    ema_summary = evaluate_model(ema.model, val_loader, info.num_classes, info.ignore_index, device,
                                                 amp).summary(info.classes)
                    record.update({"ema_val_miou": ema_summary["miou"],
                                   "ema_val_per_class_iou": ema_summary["per_class_iou"]})
                miou = summary["miou"] or 0.0
                improved = miou > best_miou
                if improved:
                    best_miou, best_epoch, stale = miou, epoch, 0
                else:
                    stale += 1
            if main_proc:
                train_state = {"epoch": epoch, "best_miou": best_miou, "best_epoch": best_epoch, "sitting": sitting,
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict(), "rng": _rng_state()}
                extra = {"config": asdict(cfg), "metrics": record}
                if improved:
                    save_checkpoint(make_checkpoint(model, info, cfg.img_size, **extra), out / "best.pt")
                if ema is not None:  # the averaged weights as a checkpoint of their own, and in last.pt to resume
                    save_checkpoint(make_checkpoint(ema.model, info, cfg.img_size, weights="ema", **extra),
                                    out / "ema.pt")
                    train_state["ema_updates"] = ema.updates
                    extra["ema_state_dict"] = {k: v.detach().cpu() for k, v in ema.model.state_dict().items()}
                save_checkpoint(make_checkpoint(model, info, cfg.img_size, train_state=train_state, **extra),
                                out / "last.pt")
                # wall time of the whole epoch: training, validation and checkpoints
                record["wall_time_s"] = round(time.time() - t0, 2)
                with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                val_text = f" val mIoU {record['val_miou']:.4f}" if "val_miou" in record else ""
                if "ema_val_miou" in record:
                    val_text += f" (EMA {record['ema_val_miou']:.4f})"
                parts = f"train {record['epoch_time_s']:.1f}s" + (
                    f", val {record['val_time_s']:.1f}s" if "val_time_s" in record else "")
                log(f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f}{val_text}"
                    f"{' (best)' if improved else ''} [{record['wall_time_s']:.1f}s: {parts}]")
            if cfg.patience and stale >= cfg.patience:
                if main_proc:
                    log(f"early stop: no better val mIoU for {cfg.patience} evaluations "
                        f"(best {best_miou:.4f} at epoch {best_epoch + 1})")
                break
    dist.barrier()
    dist.cleanup()
    return {"best_miou": best_miou, "best_epoch": best_epoch + 1, "epochs": epoch + 1, "out": str(out),
            "model": cfg.model}
