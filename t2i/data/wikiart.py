"""WikiArt (thesis 3.4.2): huggan/wikiart, ~81,000 paintings in 72 parquet shards of ~1,100 embedded JPEGs, labelled
with one of 27 styles. Read file-sequentially by :class:`~t2i.data.shards.ShardStream` (thesis 3.4.3); the style
names recorded in the files are checked against the captions. The judge trains on 80% of up to 20,000 paintings
and is measured on the other 20%."""

from __future__ import annotations

from ..configs import ExperimentConfig
from .cifar10 import class_resnet_recipe
from .base import DatasetSpec


# The `style` ClassLabel names of huggan/wikiart in label order, as every parquet shard records them (schema metadata
# key "huggingface", info.features.style.names); https://huggingface.co/datasets/huggan/wikiart at t2i.hub's revision.
STYLE_LABELS = (
    "Abstract_Expressionism",
    "Action_painting",
    "Analytical_Cubism",
    "Art_Nouveau",
    "Baroque",
    "Color_Field_Painting",
    "Contemporary_Realism",
    "Cubism",
    "Early_Renaissance",
    "Expressionism",
    "Fauvism",
    "High_Renaissance",
    "Impressionism",
    "Mannerism_Late_Renaissance",
    "Minimalism",
    "Naive_Art_Primitivism",
    "New_Realism",
    "Northern_Renaissance",
    "Pointillism",
    "Pop_Art",
    "Post_Impressionism",
    "Realism",
    "Rococo",
    "Romanticism",
    "Symbolism",
    "Synthetic_Cubism",
    "Ukiyo_e",
)


class WikiArt(DatasetSpec):
    name = "wikiart"
    hub_repo = "huggan/wikiart"
    card_id = hub_repo
    terms = (
        "other",
        "huggan/wikiart's license is unknown (its dataset card says so), and each painting "
        "keeps its own rights; use for research",
        "https://huggingface.co/datasets/huggan/wikiart",
    )

    def file_label_names(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return STYLE_LABELS

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        return class_resnet_recipe(cfg)


DATASET = WikiArt()
