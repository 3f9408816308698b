"""CelebA attributes -> captions (thesis 3.5.3): a pure function of the 40 binary attributes and a seeded RNG.

Structure: ``A photo of a <age> <gender> with <hair>, <face>, <facial hair>, <expression>, <accessories>``, e.g.
"A photo of a young woman with straight blond hair, bangs, smiling, wearing earrings".

- **Paraphrases.** Each attribute has several phrasings; the RNG picks one per caption.
- **Minor features** (:data:`MINOR`: eyebrows, cheeks, nose, lips, ...) appear with probability 0.8 each; the core
  (age, gender, hair, facial hair, expression, accessories) always appears when active.
- **No negatives.** Inactive attributes are left out, never described as absent. ``Attractive`` is left out
  altogether (a judgement, not a visible feature); ``Blurry`` becomes "A blurry photo of ...".
- **Collisions** (CelebA labels contradict each other on some images) are resolved by :data:`PRIORITY`, one winner
  per group, highest first:

  ======================  ====================================================================================
  group                   rule
  ======================  ====================================================================================
  hair colour             Gray_Hair > Blond_Hair > Black_Hair > Brown_Hair (one colour, never two)
  hair style              Wavy_Hair > Straight_Hair; combined with the colour: "wavy brown hair"
  baldness                Bald removes hair colour, style and Bangs, and wins over Receding_Hairline
  eyebrows                Arched_Eyebrows > Bushy_Eyebrows
  facial hair             only for men; Goatee, Mustache, 5_o_Clock_Shadow, Sideburns (any of them) win over
                          No_Beard ("clean-shaven"), which CelebA also sets for nearly every woman
  age / gender words      Male -> "man", else "woman"; Young -> "young" before it; nothing for not-young
  ======================  ====================================================================================

:func:`prompt` is the builder for inference: attribute names in, the caption out (first phrasing, every minor
feature included, so the same attributes always give the same prompt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from ..configs import ExperimentConfig
from ..text import TextEncoder, tokenize
from . import shards, synthetic
from .images import BadSample, decode_image, to_tensor
from .base import RESNET18, DatasetSpec

# The 40 attributes in CelebA's order (list_attr_celeba.txt; the column names of flwrlabs/celeba).
ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

PRIORITY = {
    "hair colour": ("Gray_Hair", "Blond_Hair", "Black_Hair", "Brown_Hair"),
    "hair style": ("Wavy_Hair", "Straight_Hair"),
    "eyebrows": ("Arched_Eyebrows", "Bushy_Eyebrows"),
}
HAIR_COLOUR = {
    "Gray_Hair": ("gray", "grey"),
    "Blond_Hair": ("blond", "blonde"),
    "Black_Hair": ("black",),
    "Brown_Hair": ("brown",),
}
HAIR_STYLE = {"Wavy_Hair": ("wavy",), "Straight_Hair": ("straight",)}
# Phrases in caption order within each section; the first phrase is the canonical one (used by `prompt`).
HAIR_EXTRA = {
    "Bald": ("a bald head", "a shaved head"),
    "Bangs": ("bangs", "a fringe"),
    "Receding_Hairline": ("a receding hairline",),
}
FACE = {  # minor features: each included with probability MINOR_P
    "Arched_Eyebrows": ("arched eyebrows",),
    "Bushy_Eyebrows": ("bushy eyebrows", "thick eyebrows"),
    "High_Cheekbones": ("high cheekbones",),
    "Rosy_Cheeks": ("rosy cheeks",),
    "Pale_Skin": ("pale skin",),
    "Oval_Face": ("an oval face",),
    "Chubby": ("a chubby face", "a round face"),
    "Double_Chin": ("a double chin",),
    "Narrow_Eyes": ("narrow eyes",),
    "Bags_Under_Eyes": ("bags under the eyes", "tired eyes"),
    "Big_Nose": ("a big nose", "a large nose"),
    "Pointy_Nose": ("a pointy nose",),
    "Big_Lips": ("big lips", "full lips"),
}
MINOR = tuple(FACE)
MINOR_P = 0.8
FACIAL_HAIR = {
    "Goatee": ("a goatee",),
    "Mustache": ("a mustache", "a moustache"),
    "5_o_Clock_Shadow": ("a five o'clock shadow", "stubble"),
    "Sideburns": ("sideburns",),
}
CLEAN_SHAVEN = ("a clean-shaven face",)
EXPRESSION = {"Smiling": ("smiling", "a smile"), "Mouth_Slightly_Open": ("mouth slightly open", "parted lips")}
ACCESSORIES = {
    "Eyeglasses": ("wearing eyeglasses", "wearing glasses"),
    "Wearing_Hat": ("wearing a hat",),
    "Wearing_Earrings": ("wearing earrings",),
    "Wearing_Necklace": ("wearing a necklace",),
    "Wearing_Necktie": ("wearing a necktie", "wearing a tie"),
    "Wearing_Lipstick": ("wearing lipstick",),
    "Heavy_Makeup": ("wearing heavy makeup", "heavy makeup"),
}


def as_attributes(values: Sequence | np.ndarray | dict) -> dict[str, bool]:
    """40 values in :data:`ATTRIBUTES` order (0/1, False/True, or CelebA's -1/1), or a ``{name: value}`` dict with
    every attribute, -> ``{name: bool}``. Anything else is a ValueError saying what is wrong."""
    if isinstance(values, dict):
        unknown = sorted(set(values) - set(ATTRIBUTES))
        missing = sorted(set(ATTRIBUTES) - set(values))
        if unknown or missing:
            raise ValueError(f"attribute names: unknown {unknown}, missing {missing}")
        values = [values[name] for name in ATTRIBUTES]
    values = list(np.asarray(values).reshape(-1).tolist()) if not isinstance(values, list) else values
    if len(values) != len(ATTRIBUTES):
        raise ValueError(f"expected {len(ATTRIBUTES)} attribute values, got {len(values)}")
    bad = [(ATTRIBUTES[i], v) for i, v in enumerate(values) if v not in (0, 1, -1) or v is None]
    if bad:
        raise ValueError(f"attribute values must be binary (0/1, False/True or -1/1); got {bad[:5]}")
    return {name: v == 1 for name, v in zip(ATTRIBUTES, values)}


def caption(values, rng: np.random.Generator | int | None = None) -> str:
    """The caption of one attribute vector. ``rng`` (a Generator or a seed) picks phrasings and minor features;
    ``None`` gives the canonical caption (first phrasing, all minor features)."""
    on = as_attributes(values)
    parts = [phrase for _, phrase in _parts(on, rng)]
    who = ("young " if on["Young"] else "") + ("man" if on["Male"] else "woman")
    photo = "A blurry photo" if on["Blurry"] else "A photo"
    return f"{photo} of a {who}" + (f" with {', '.join(parts)}" if parts else "")


def claims(values) -> dict[str, bool]:
    """What the canonical caption asserts about the image, attribute by attribute: its gender either way ("man" /
    "woman"), and every attribute it names (after collision resolution). Attribute adherence is measured on these;
    attributes the caption leaves out are not claimed to be absent."""
    on = as_attributes(values)
    said = {"Male": on["Male"]} | {name: True for name in ("Young", "Blurry") if on[name]}
    for names, _ in _parts(on, None):
        said.update({name: True for name in names})
    return said


def _parts(on: dict[str, bool], rng: np.random.Generator | int | None) -> list[tuple[tuple[str, ...], str]]:
    """The ``with ...`` phrases in caption order, each with the attributes it states."""
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))

    def say(phrases: Sequence[str]) -> str:
        return phrases[0] if rng is None else phrases[int(rng.integers(len(phrases)))]

    def include_minor() -> bool:
        return rng is None or rng.random() < MINOR_P

    parts: list[tuple[tuple[str, ...], str]] = []
    # hair: one colour, one style, combined ("straight blond hair"); bald replaces all of it
    if on["Bald"]:
        parts.append((("Bald",), say(HAIR_EXTRA["Bald"])))
    else:
        colour = next((a for a in PRIORITY["hair colour"] if on[a]), None)
        style = next((a for a in PRIORITY["hair style"] if on[a]), None)
        if colour or style:
            words = ([say(HAIR_STYLE[style])] if style else []) + ([say(HAIR_COLOUR[colour])] if colour else [])
            parts.append((tuple(filter(None, (style, colour))), " ".join(words) + " hair"))
        for name in ("Bangs", "Receding_Hairline"):
            if on[name]:
                parts.append(((name,), say(HAIR_EXTRA[name])))
    # minor face features; one eyebrow phrase at most
    eyebrows = next((a for a in PRIORITY["eyebrows"] if on[a]), None)
    for name, phrases in FACE.items():
        if on[name] and (name not in PRIORITY["eyebrows"] or name == eyebrows) and include_minor():
            parts.append(((name,), say(phrases)))
    # facial hair, men only: what is there, else clean-shaven
    if on["Male"]:
        beard = [((a,), say(p)) for a, p in FACIAL_HAIR.items() if on[a]]
        parts += beard or ([(("No_Beard",), say(CLEAN_SHAVEN))] if on["No_Beard"] else [])
    parts += [((a,), say(p)) for a, p in EXPRESSION.items() if on[a]]
    parts += [((a,), say(p)) for a, p in ACCESSORIES.items() if on[a]]
    return parts


def vector(active: Iterable[str]) -> np.ndarray:
    """``["Young", "Smiling"]`` -> the 40-long 0/1 vector with those attributes on."""
    active = list(active)
    unknown = sorted(set(active) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"unknown CelebA attributes {unknown}; known: {', '.join(ATTRIBUTES)}")
    return np.array([int(name in active) for name in ATTRIBUTES], dtype=np.uint8)


def prompt(*active: str) -> str:
    """The inference caption for a set of attributes: ``prompt("Young", "Smiling", "Blond_Hair")``."""
    return caption(vector(active))


# --- the dataset: flwrlabs/celeba parquet shards ---------------------------------------------------------------------
class CelebaRow:
    """A flwrlabs/celeba row -> (uint8 image at ``resolution``, 40 attributes as 0/1); called, the image is a tensor
    in ``pixel_range`` and the attributes a tensor (what the attribute judge trains on)."""

    def __init__(self, resolution: int, pixel_range: tuple[float, float] = (-1.0, 1.0)):
        self.resolution, self.pixel_range = resolution, pixel_range
        self.columns = ["image", *ATTRIBUTES]

    def __call__(self, row: dict[str, Any]) -> tuple:
        image, attributes = self.parse(row)
        return to_tensor(image, self.pixel_range), torch.from_numpy(attributes)

    def parse(self, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        values = [row.get(name) for name in ATTRIBUTES]
        missing = [name for name, v in zip(ATTRIBUTES, values) if v is None]
        if missing:
            raise BadSample(f"missing attributes {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        attributes = np.array([int(v == 1 or v is True) for v in values], dtype=np.int64)  # bool, 0/1 or -1/1
        return decode_image(shards.image_bytes(row.get("image")), self.resolution), attributes


def attributes_table(num_rows: int, rng: np.random.Generator) -> dict[str, list[bool]]:
    """Random but plausible CelebA attribute columns (for synthetic shards): each attribute on with its own rate."""
    rates = rng.uniform(0.05, 0.6, len(ATTRIBUTES))
    return {name: list(map(bool, rng.random(num_rows) < rate)) for name, rate in zip(ATTRIBUTES, rates)}


class CaptionTokens:
    """CelebA's per-example transform, run in the DataLoader workers: ``(mean, std, attributes)`` -> ``(mean, std,
    tokens)``, the tokens of a fresh :func:`caption` of the attributes drawn with the row's generator (seeded by seed,
    epoch, shard and row: the same caption in any worker and on resume, a new one every epoch). Holds only the
    tokenizer, so it is cheap to copy into workers."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, example: tuple, rng: np.random.Generator) -> tuple:
        *latent, attributes = example
        tokens = tokenize(self.tokenizer, [caption(attributes.numpy(), rng)], self.max_tokens)
        return (*latent, {name: ids[0] for name, ids in tokens.items()})


class AttributeCaptions:
    """CelebA's conditioner: the data workers draw a fresh caption for every image's attributes each epoch and
    tokenise it (:class:`CaptionTokens`, its ``example_transform``); the step runs the frozen text encoder on the
    tokens (too many distinct captions to cache) and gives the captions flagged in ``drop`` the null embedding. No
    Python runs and nothing waits for the device in the step."""

    def __init__(self, encoder: TextEncoder):
        self.encoder = encoder
        self.null = encoder.null_embedding.to(encoder.device)
        self.example_transform = CaptionTokens(encoder.tokenizer, encoder.max_tokens)

    def to(self, device: torch.device | str) -> "AttributeCaptions":
        return AttributeCaptions(self.encoder.to(device))

    def embed(self, tokens: dict[str, torch.Tensor], drop: torch.Tensor) -> torch.Tensor:
        emb = self.encoder.embed_tokens(tokens).float()
        return torch.where(drop[:, None, None], self.null.expand_as(emb), emb)


class CelebA(DatasetSpec):
    """40 binary attributes per face; captions are generated from them (this module's top half)."""

    name = "celeba"
    hub_repo = "flwrlabs/celeba"
    card_id = hub_repo
    terms = (
        "other",
        "CelebA is available for non-commercial research purposes only (the CelebA Dataset Release Agreement)",
        "https://huggingface.co/datasets/flwrlabs/celeba/blob/main/LICENSE",
    )
    default_prompts = 50  # attribute sets in a guidance sweep unless told otherwise

    def check_shards(self, file: Path, cfg: ExperimentConfig) -> None:
        """Captions come from the attribute columns, not from a label's name: every one must be there."""
        absent = [name for name in ("image", *ATTRIBUTES) if name not in pq.read_schema(file).names]
        if absent:
            raise ValueError(
                f"{Path(file).name} lacks the CelebA columns {absent}: expected flwrlabs/celeba's layout "
                "(image, celeb_id and the 40 attribute columns)"
            )

    def row_decoder(self, cfg: ExperimentConfig) -> CelebaRow:
        return CelebaRow(cfg.resolution, cfg.pixel_range)

    def write_synthetic(self, cfg: ExperimentConfig, out_dir: Path) -> None:
        """flwrlabs/celeba's layout: image, celeb_id and 40 boolean attribute columns; 178x218 faces."""
        synthetic.write_class_shards(
            out_dir,
            num_shards=3,
            rows_per_shard=40,
            prefix="train",
            seed=0,
            num_classes=10,
            image_size=(cfg.resolution * 178 // 256, cfg.resolution * 218 // 256),
            label_column="celeb_id",
            row_group_size=16,
            extra_columns=lambda labels, rng: attributes_table(len(labels), rng),
            extra_features={name: {"dtype": "bool", "_type": "Value"} for name in ATTRIBUTES},
        )

    def conditioner(self, cfg: ExperimentConfig, text: TextEncoder) -> AttributeCaptions:
        return AttributeCaptions(text)

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        """40 sigmoid outputs on 64 px faces (what attribute classifiers usually see)."""
        return {
            **RESNET18,
            "channels": 3,
            "num_classes": len(ATTRIBUTES),
            "epochs": cfg.judge_epochs,
            "max_shift": 4,
            "multilabel": True,
            "resolution": 64,
        }

    def sweep_conditions(
        self, cfg: ExperimentConfig, samples_per_prompt: int, prompts: int | None = None
    ) -> torch.Tensor:
        """The attributes of ``prompts`` held-out real faces (judge_test), each ``samples_per_prompt`` times."""
        _, attributes = self.load_images(cfg, "judge_test", limit=prompts or self.default_prompts)
        return attributes.repeat_interleave(samples_per_prompt, dim=0)

    def prompts(self, cfg: ExperimentConfig, conditions: torch.Tensor) -> list[str]:
        """The canonical caption of each attribute vector."""
        return [caption(vector) for vector in conditions.tolist()]

    def adherence(self, predicted: torch.Tensor, conditions: torch.Tensor) -> dict[str, float]:
        """The fraction of all caption claims (:func:`claims`) the judge's 0/1 predictions confirm."""
        mask, values = claim_masks(conditions)
        return {"adherence": ((predicted == values) & mask).sum().item() / max(mask.sum().item(), 1)}

    def image_adherence(self, predicted: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Each image's share of its caption's claims that the judge confirms."""
        mask, values = claim_masks(conditions)
        return ((predicted == values) & mask).sum(1).float() / mask.sum(1).clamp(min=1)

    binary_adherence = False

    def adherence_meaning(self, cfg: ExperimentConfig) -> str:
        return (
            "fraction of the attributes each prompt's caption claims (gender either way, every attribute it names) "
            "that the 40-attribute judge confirms"
        )

    def chance(self, cfg: ExperimentConfig) -> None:
        return None  # depends on the attributes' frequencies; the real faces' score is the reference instead


def claim_masks(attribute_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which attributes each vector's caption claims ([N, 40] bool) and the claimed values ([N, 40] 0/1). Attributes
    a caption leaves out are not claims (captions never say "no ...")."""
    mask = torch.zeros(attribute_vectors.shape, dtype=torch.bool)
    values = torch.zeros(attribute_vectors.shape, dtype=torch.long)
    for i, vector in enumerate(attribute_vectors.tolist()):
        for name, value in claims(vector).items():
            k = ATTRIBUTES.index(name)
            mask[i, k], values[i, k] = True, int(value)
    return mask, values


DATASET = CelebA()
