"""Datasets, transforms, statistics and downloads."""

from edgeseg.data.datasets import (
    FORMATS,
    SegmentationDataset,
    available_splits,
    detect_format,
    open_dataset,
)
from edgeseg.data.info import BUILTIN, CAMVID, CITYSCAPES, VOC, DatasetInfo
from edgeseg.data.stats import class_pixel_counts
from edgeseg.data.transforms import (
    build_eval_transform,
    build_train_transform,
    normalize,
    pad_to_multiple,
)

__all__ = [
    "SegmentationDataset",
    "open_dataset",
    "detect_format",
    "available_splits",
    "FORMATS",
    "DatasetInfo",
    "CAMVID",
    "CITYSCAPES",
    "VOC",
    "BUILTIN",
    "build_train_transform",
    "build_eval_transform",
    "pad_to_multiple",
    "normalize",
    "class_pixel_counts",
]
