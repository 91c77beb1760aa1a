"""PyTorch architectures (training and export only; the on-board runtime never imports this)."""

from saliency_ros.models.registry import ModelEntry, create_model, get_entry, list_models

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models"]
