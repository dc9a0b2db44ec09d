"""edgeseg: real-time semantic segmentation from data to edge devices."""

__version__ = "0.1.0"
