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

import numpy as np

# The 40 attributes in CelebA's order (list_attr_celeba.txt; the column names of flwrlabs/celeba).
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")

PRIORITY = {
    "hair colour": ("Gray_Hair", "Blond_Hair", "Black_Hair", "Brown_Hair"),
    "hair style": ("Wavy_Hair", "Straight_Hair"),
    "eyebrows": ("Arched_Eyebrows", "Bushy_Eyebrows"),
}
HAIR_COLOUR = {"Gray_Hair": ("gray", "grey"), "Blond_Hair": ("blond", "blonde"), "Black_Hair": ("black",),
               "Brown_Hair": ("brown",)}
HAIR_STYLE = {"Wavy_Hair": ("wavy",), "Straight_Hair": ("straight",)}
# Phrases in caption order within each section; the first phrase is the canonical one (used by `prompt`).
HAIR_EXTRA = {"Bald": ("a bald head", "a shaved head"), "Bangs": ("bangs", "a fringe"),
              "Receding_Hairline": ("a receding hairline",)}
FACE = {  # minor features: each included with probability MINOR_P
    "Arched_Eyebrows": ("arched eyebrows",), "Bushy_Eyebrows": ("bushy eyebrows", "thick eyebrows"),
    "High_Cheekbones": ("high cheekbones",), "Rosy_Cheeks": ("rosy cheeks",), "Pale_Skin": ("pale skin",),
    "Oval_Face": ("an oval face",), "Chubby": ("a chubby face", "a round face"), "Double_Chin": ("a double chin",),
    "Narrow_Eyes": ("narrow eyes",), "Bags_Under_Eyes": ("bags under the eyes", "tired eyes"),
    "Big_Nose": ("a big nose", "a large nose"), "Pointy_Nose": ("a pointy nose",), "Big_Lips": ("big lips", "full lips"),
}
MINOR = tuple(FACE)
MINOR_P = 0.8
FACIAL_HAIR = {"Goatee": ("a goatee",), "Mustache": ("a mustache", "a moustache"),
               "5_o_Clock_Shadow": ("a five o'clock shadow", "stubble"), "Sideburns": ("sideburns",)}
CLEAN_SHAVEN = ("a clean-shaven face",)
EXPRESSION = {"Smiling": ("smiling", "a smile"), "Mouth_Slightly_Open": ("mouth slightly open", "parted lips")}
ACCESSORIES = {"Eyeglasses": ("wearing eyeglasses", "wearing glasses"), "Wearing_Hat": ("wearing a hat",),
               "Wearing_Earrings": ("wearing earrings",), "Wearing_Necklace": ("wearing a necklace",),
               "Wearing_Necktie": ("wearing a necktie", "wearing a tie"), "Wearing_Lipstick": ("wearing lipstick",),
               "Heavy_Makeup": ("wearing heavy makeup", "heavy makeup")}


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
