"""Training data: dataset layouts on disk and frame-pair samples with shared augmentation."""

from saliency_ros.sources.layouts import DatasetError, VideoSequence, detect_layout, discover
from saliency_ros.training.data.pairs import AugmentConfig, FramePairDataset

__all__ = ["AugmentConfig", "DatasetError", "FramePairDataset", "VideoSequence", "detect_layout", "discover"]
