"""Datasets. Every dataset yields ``(x0, caption_id)``: an image tensor in the config's ``pixel_range`` and the
index of its caption in ``cfg.captions`` (for the digit experiments, caption id = class label)."""

from .digits import SPLITS, load_images, load_dataset

__all__ = ["SPLITS", "load_images", "load_dataset"]
