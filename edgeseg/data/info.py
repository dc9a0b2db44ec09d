"""The dataset descriptor: the facts about a label set that travel with every
checkpoint and artifact (class names, display colours, ignore index, mean/std)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from edgeseg.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN  # of RGB in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        # Normalise lists (from JSON) to tuples so that equality and hashing work.
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in self.colors))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        self._check_numbers()
        if len(self.classes) != len(self.colors):
            raise DataError(
                f"dataset '{self.name}' has {len(self.classes)} classes but "
                f"{len(self.colors)} colours: give one colour per class"
            )
        if 0 <= self.ignore_index < len(self.classes):
            raise DataError(
                f"dataset '{self.name}': ignore index {self.ignore_index} is a real class; use 255"
            )

    def _check_numbers(self) -> None:
        """Stats that would turn every input into inf/NaN (a zero std), or colours no image can hold."""
        for field, values, ok, rule in (("mean", self.mean, lambda v: True, ""),
                                        ("std", self.std, lambda v: v > 0.0, " > 0")):
            if len(values) != 3 or not all(math.isfinite(v) and ok(v) for v in values):
                raise DataError(f"dataset '{self.name}': {field} must be three finite numbers{rule} (of RGB "
                                f"scaled to 0..1), got {list(values)}: recompute the dataset statistics")
        bad = [c for c in self.colors if len(c) != 3 or not all(0 <= v <= 255 for v in c)]
        if bad:
            raise DataError(f"dataset '{self.name}': colour {list(bad[0])} is not three integers 0..255: "
                            f"fix the class colours")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["colors"] = [list(c) for c in self.colors]
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        try:
            return cls(
                name=d["name"],
                classes=d["classes"],
                colors=d["colors"],
                ignore_index=d.get("ignore_index", 255),
                mean=d.get("mean", IMAGENET_MEAN),
                std=d.get("std", IMAGENET_STD),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"dataset descriptor is incomplete ({exc}): it needs name, classes and colors") from exc

    def check_compatible(self, other: "DatasetInfo", what: str = "data") -> None:
        """Raise when two label sets differ (a model trained on one cannot score the other)."""
        if self.classes != other.classes:
            raise DataError(
                f"{what} has classes {list(other.classes)} but the model was trained on "
                f"{list(self.classes)}: use data with the same classes or retrain"
            )


CAMVID = DatasetInfo(
    name="camvid",
    classes=("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
             "Fence", "Car", "Pedestrian", "Bicyclist"),
    colors=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
            (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
            (0, 128, 192)),
)

# Cityscapes: the 19 training classes and their official colours.
CITYSCAPES = DatasetInfo(
    name="cityscapes",
    classes=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
             "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
             "truck", "bus", "train", "motorcycle", "bicycle"),
    colors=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
            (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
            (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
            (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)


def voc_colormap(n: int) -> tuple[tuple[int, int, int], ...]:
    # The standard Pascal VOC bit-interleaved palette.
    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap.append((r, g, b))
    return tuple(cmap)


VOC = DatasetInfo(
    name="voc2012",
    classes=("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
             "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
             "pottedplant", "sheep", "sofa", "train", "tvmonitor"),
    colors=voc_colormap(21),
)

BUILTIN = {info.name: info for info in (CAMVID, CITYSCAPES, VOC)}
