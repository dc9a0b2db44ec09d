"""Data, evaluation, fine-tuning and batch-norm re-calibration shared by PTQ, QAT and pruning.

Fine-tuning (:func:`finetune`) is a deliberately small loop over the project's own
pieces: the training split with :func:`edgeseg.data.build_train_transform`, the loss from
:func:`edgeseg.losses.build_loss`, the optimizer from
:func:`edgeseg.train.trainer.build_optimizer` and the poly schedule from
:func:`edgeseg.train.schedule.build_scheduler`. ``edgeseg.train.train()`` builds its
model from the registry, so it cannot train an NNCF-quantized or channel-pruned model;
this loop can. No AMP, no DDP, CPU or one GPU.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from edgeseg.errors import ConfigError, DataError
from edgeseg.progress import track


class Data:
    """The train and val splits of a dataset folder, checked against the model's classes."""

    def __init__(self, root, info, divisor: int, *, train_split: str = "train", val_split: str = "val",
                 val_images: int | None = None, calib_images: int = 32, train_scale=(0.5, 2.0),
                 holdout: dict | None = None):
        from edgeseg.data import available_splits, build_eval_transform, open_dataset
        from edgeseg.data.holdout import open_split

        splits = available_splits(root)
        self.info = info
        if holdout:
            # the source was trained with a hold-out (e.g. a whole video sequence): fine-tune on
            # its training images and score its held-out ones, never the other way round
            self.val = open_split(root, holdout.get("split", val_split), holdout)
            self.train = open_split(root, holdout["from"], holdout)
        else:
            if val_split not in splits:
                raise DataError(f"dataset '{root}' has no '{val_split}' split (it has: {', '.join(splits) or 'none'}): "
                                f"compression needs validation images to measure mIoU")
            self.val = open_dataset(root, val_split)
            self.train = open_dataset(root, train_split) if train_split in splits else None
        info.check_compatible(self.val.info, f"dataset '{root}'")
        for ds in (self.val, self.train):  # the model's own normalisation (a model of your own may differ)
            if ds is not None:
                ds.info = info
        if len(self.val) == 0:
            raise DataError(f"the '{val_split}' split of '{root}' is empty")
        self.val.transform = build_eval_transform(divisor=divisor, ignore_index=info.ignore_index)
        self.divisor = divisor
        if val_images:
            self.val_subset = Subset(self.val, list(range(min(int(val_images), len(self.val)))))
        else:
            self.val_subset = self.val
        self.calib_images = int(calib_images)
        self.train_scale = tuple(float(v) for v in train_scale)  #: random-scale range of fine-tuning crops

    def val_loader(self, batch_size: int = 4) -> DataLoader:
        from edgeseg.train.trainer import pad_collate

        return DataLoader(self.val_subset, batch_size=batch_size, shuffle=False, num_workers=0,
                          collate_fn=partial(pad_collate, ignore_index=self.info.ignore_index,
                                             divisor=self.divisor))

    def val_items(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(1x3xHxW image, 1xHxW mask) per validation image (for NNCF's validation function)."""
        return [(x[None], y[None]) for x, y in (self.val_subset[i] for i in range(len(self.val_subset)))]

    def calibration(self, size=None) -> list[torch.Tensor]:
        """Up to ``calib_images`` normalised 1x3xHxW images (train split, else val), padded
        (never resized) to ``size`` or to the stride like evaluation."""
        from edgeseg.data import build_eval_transform

        ds = self.train if self.train is not None and len(self.train) else self.val
        old = ds.transform
        ds.transform = build_eval_transform(size, divisor=self.divisor, ignore_index=self.info.ignore_index)
        try:
            n = min(self.calib_images, len(ds))
            idx = np.linspace(0, len(ds) - 1, n).round().astype(int) if n > 1 else [0]
            return [ds[int(i)][0][None] for i in idx]
        finally:
            ds.transform = old

    def train_loader(self, img_size, batch_size: int, *, seed: int = 0) -> DataLoader:
        from edgeseg.data import build_train_transform

        if self.train is None or len(self.train) == 0:
            raise DataError("fine-tuning needs a 'train' split in --data")
        self.train.transform = build_train_transform(tuple(img_size), scale=self.train_scale, hflip=True,
                                                     ignore_index=self.info.ignore_index)
        drop_last = len(self.train) > batch_size
        return DataLoader(self.train, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=drop_last,
                          generator=torch.Generator().manual_seed(seed))


def evaluate(model, data: Data) -> dict:
    """``ConfusionMatrix.summary`` of a torch model on the validation images."""
    from edgeseg.train.trainer import evaluate_model

    loader = data.val_loader()
    cm = evaluate_model(model, track(loader, "val mIoU", len(loader)), data.info.num_classes, data.info.ignore_index,
                        torch.device("cpu"))
    return cm.summary(data.info.classes)


def finetune(model, data: Data, *, img_size, epochs: float = 1.0, steps: int = 0, lr: float = 1e-4,
             batch_size: int = 4, loss: str = "ce", seed: int = 0, freeze_bn: bool = False, log=None) -> dict:
    """Fine-tune ``model`` in place (``epochs`` passes over train, or ``steps`` steps when > 0).

    ``freeze_bn`` keeps batch-norm layers in eval mode (running statistics fixed): for QAT,
    whose quantizer ranges were calibrated on those statistics; a short fine-tune on small
    batches would otherwise pull them towards the crops' statistics."""
    from edgeseg.losses import build_loss, parse_loss_spec
    from edgeseg.train.schedule import build_scheduler
    from edgeseg.train.trainer import TrainConfig, build_optimizer

    loader = data.train_loader(img_size, batch_size, seed=seed)
    total = int(steps) if steps and steps > 0 else int(math.ceil(float(epochs) * len(loader)))
    if total <= 0:
        return {"steps": 0}
    torch.manual_seed(seed)
    counts = None
    if any(name == "wce" for _, name, _ in parse_loss_spec(loss)):  # class weights from the training masks
        from edgeseg.data import class_pixel_counts

        counts = class_pixel_counts(data.train, data.info.num_classes)
    criterion = build_loss(loss, data.info.num_classes, ignore_index=data.info.ignore_index, class_counts=counts)
    optimizer = build_optimizer(model, TrainConfig(model="-", data="-", optimizer="adamw", lr=lr))
    scheduler = build_scheduler(optimizer, "poly", total, 0)
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    def batches():  # passes over the loader until ``total`` steps
        n = 0
        while True:
            for b in loader:
                yield b
                n += 1
                if n >= total:
                    return

    step, loss_sum = 0, 0.0
    for images, masks in track(batches(), "fine-tune", total):
        out = model(images)
        value = criterion(out, masks)
        if not torch.isfinite(value):
            raise ConfigError(f"the fine-tuning loss became {value.item()} at step {step + 1}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += value.item()
        step += 1
        if log and (step == total or step % 50 == 0):
            log(f"  fine-tune step {step}/{total} loss {loss_sum / step:.4f}")
    model.eval()
    return {"steps": step, "lr": lr, "batch_size": batch_size, "loss": loss, "freeze_bn": bool(freeze_bn),
            "scale": list(data.train_scale), "mean_loss": loss_sum / max(1, step)}


@torch.no_grad()
def recalibrate_bn(model, batches) -> int:
    """Re-estimate every BatchNorm's running mean/var from ``batches`` (cumulative average,
    train-mode forward, no weight update). Returns the number of BN layers reset."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = model.training
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, mo in zip(bns, momenta):
            m.momentum = mo
        model.train(was)
    return len(bns)


def bn_batches(data: Data, img_size, n: int = 8, batch_size: int = 4):
    """Up to ``n`` augmented training batches for BN re-calibration."""
    try:
        loader = data.train_loader(img_size, batch_size)
    except DataError:
        return [x for x in data.calibration()]
    out = []
    for images, _ in loader:
        out.append(images)
        if len(out) >= n:
            break
    return out


def padded_items(data: Data, input_size) -> list:
    """Validation (image, mask) pairs as numpy, padded to the static ``input_size``."""
    h, w = input_size
    items = []
    for x, y in data.val_items():
        if x.shape[-2] > h or x.shape[-1] > w:
            raise ValueError(f"validation image {tuple(x.shape[-2:])} is larger than the model input {h}x{w}")
        xp = np.zeros((1, 3, h, w), np.float32)
        yp = np.full((1, h, w), data.info.ignore_index, np.int64)
        xp[..., : x.shape[-2], : x.shape[-1]] = x.numpy()
        yp[..., : y.shape[-2], : y.shape[-1]] = y.numpy()
        items.append((xp, yp))
    return items
