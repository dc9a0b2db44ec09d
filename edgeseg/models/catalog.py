"""Imports every architecture module so that each registers itself."""

from edgeseg.models import enet, bisenet, dabnet, deeplabv3plus, fcn, unet, segmenter  # noqa: F401
