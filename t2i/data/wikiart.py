"""WikiArt (thesis 3.4.2): huggan/wikiart, ~81,000 paintings in 72 parquet shards of ~1,100 embedded JPEGs, labelled
with one of 27 styles. Read file-sequentially by :class:`~t2i.data.shards.ShardStream` (thesis 3.4.3); the style
names recorded in the files are checked against the captions. The judge trains on 80% of up to 20,000 paintings
and is measured on the other 20%."""

from __future__ import annotations

from ..configs import ExperimentConfig
from .cifar10 import class_resnet_recipe
from .spec import DatasetSpec


class WikiArt(DatasetSpec):
    name = "wikiart"
    hub_repo = "huggan/wikiart"

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        return class_resnet_recipe(cfg)


DATASET = WikiArt()
