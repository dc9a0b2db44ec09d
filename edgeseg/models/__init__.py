"""Model registry and architectures."""

from edgeseg.models.base import SegmentationModel
from edgeseg.models.registry import create_model, get_entry, list_models, register_model
from edgeseg.models.profile import count_params, count_macs

__all__ = ["SegmentationModel", "create_model", "get_entry", "list_models", "register_model",
           "count_params", "count_macs"]
