"""Datasets. ``load_dataset`` yields ``(x0, caption_id)`` for training: an image in the config's ``pixel_range`` and
the index of its caption in ``cfg.captions`` (for the digit experiments, caption id = class label).
``load_images`` gives the same images in [0, 1], the range judges, metrics and figures work in."""

from .digits import SPLITS, load_images, load_dataset

__all__ = ["SPLITS", "load_images", "load_dataset"]
