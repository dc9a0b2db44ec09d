"""Training: the loop, schedules, checkpoints and distributed helpers."""

from edgeseg.train.checkpoint import load_checkpoint, save_checkpoint
from edgeseg.train.trainer import TrainConfig, parse_size, train

__all__ = ["TrainConfig", "train", "parse_size", "load_checkpoint", "save_checkpoint"]
