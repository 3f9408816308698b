"""Datasets. ``load_dataset`` gives ``(x0, caption_id)`` training examples: an image in the config's
``pixel_range`` and the index of its caption in ``cfg.captions`` (caption id = class label). ``load_images`` gives
images in [0, 1], the range judges, metrics and figures work in. Parquet datasets stream file-sequentially
(:mod:`t2i.data.shards`)."""

from .sources import SPLITS, load_dataset, load_images

__all__ = ["SPLITS", "load_images", "load_dataset"]
