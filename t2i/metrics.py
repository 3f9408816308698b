"""Distribution metrics (FID, KID, IS) and CLIP score, on top of pytorch-fid and transformers.

- Features come from a pluggable extractor: pytorch-fid's InceptionV3 (pool3, 2048-d, the TF-FID weights
  ``pt_inception-2015-12-05``; the same network's 1008-way head gives Inception Score), or a judge classifier's
  penultimate layer (for offline runs and digit data; labelled as such, not comparable to Inception FID).
- Images are quantised to uint8 by rounding before feature extraction, real and generated alike; grayscale is
  repeated to 3 channels; pytorch-fid's resize (bilinear to 299) applies to both.
- FID uses pytorch-fid's ``calculate_frechet_distance``; KID (Binkowski et al. 2018) is the unbiased polynomial-kernel
  MMD^2, mean +- std over random subsets; IS (Salimans et al. 2016) is exp(E KL(p(y|x) || p(y))) over random splits.
- Reference features are computed once per (dataset, split, resolution, extractor, N) and cached on disk.
- Every number is reported with its sample count.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

from . import hub, paths
from .errors import MissingAsset
from .console import progress

FID_WEIGHTS_FILE = FID_WEIGHTS_URL.rsplit("/", 1)[-1]  # pt_inception-2015-12-05-6726825d.pth


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 by rounding (what saving a PNG does), so real and generated images are treated alike."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def load_image_folder(directory: Path) -> torch.Tensor:
    """Every image file in a folder (sorted by name) as uint8 [N, 3, H, W], read as pytorch-fid reads them (RGB)."""
    from PIL import Image
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    files = sorted(f for f in Path(directory).iterdir() if f.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images in {directory}")
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def inception_weights_path() -> Path:
    """Where torch.hub (and so pytorch-fid) keeps the FID Inception weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


@dataclass
class Features:
    features: np.ndarray  # [N, D] float64
    logits: np.ndarray | None  # [N, classes] for Inception Score, if the extractor has a classifier head

    def __len__(self) -> int:
        return len(self.features)


class InceptionExtractor:
    """pytorch-fid's InceptionV3 pool3 features plus the same checkpoint's 1008-way logits."""

    name = "inception-pool3"

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 50):
        path = inception_weights_path()
        if not path.exists():
            raise MissingAsset(
                f"FID Inception weights not found at {path}. Run `make assets` on a node with internet (it downloads "
                f"{FID_WEIGHTS_URL} there), or copy the file into $TORCH_HOME/hub/checkpoints/."
            )
        self.device, self.batch_size = torch.device(device), batch_size
        self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval().to(self.device)
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.fc = torch.nn.Linear(2048, state["fc.weight"].shape[0]).eval().to(self.device)
        self.fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        """Images uint8 [N, C, H, W] (C = 1 or 3)."""
        feats, logits = [], []
        for batch in images.split(self.batch_size):
            x = batch.to(self.device).float() / 255
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            f = self.net(x)[0].flatten(1)
            feats.append(f.double().cpu())
            logits.append(self.fc(f).double().cpu())
        return Features(torch.cat(feats).numpy(), torch.cat(logits).numpy())


DINOV2_MODEL = "facebook/dinov2-large"  # ViT-L/14, as FD_DINOv2 (Stein et al. 2023, dgm-eval) uses
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # DINOv2's preprocessor_config.json


class DinoV2Extractor:
    """DINOv2's class token (the layer-normed CLS output, transformers' ``pooler_output``): the feature space of
    FD_DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics"). Images are resized to
    224 x 224 (bicubic) and normalised with ImageNet's mean and std, as dgm-eval does; grayscale is repeated to RGB."""

    name = "dinov2-cls"

    def __init__(self, model: str = DINOV2_MODEL, device: torch.device | str = "cpu", batch_size: int = 50):
        from transformers import Dinov2Model

        try:
            self.net = Dinov2Model.from_pretrained(model, revision=hub.revision(model)).eval().to(device)
        except OSError as exc:
            raise MissingAsset(
                f"DINOv2 model {model!r} is not staged locally; run `make assets` on a node with "
                "internet, or pass a local directory"
            ) from exc
        self.device, self.batch_size = torch.device(device), batch_size
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        """Images uint8 [N, C, H, W] (C = 1 or 3)."""
        feats = []
        for batch in images.split(self.batch_size):
            x = batch.to(self.device).float() / 255
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 1)
            feats.append(self.net(pixel_values=(x - self.mean) / self.std).pooler_output.double().cpu())
        return Features(torch.cat(feats).numpy(), None)


class JudgeExtractor:
    """A judge classifier's penultimate layer (and its logits). Offline-friendly; only comparable to itself."""

    def __init__(self, judge, name: str = "judge"):
        self.judge, self.name = judge, f"{name}-penultimate"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        x = images.float() / 255
        return Features(self.judge.features(x).double().numpy(), self.judge.logits(x).double().numpy())


class RandomFeatures:
    """A fixed, randomly initialised CNN (three 3x3 convolutions with ReLU, He-normal weights from ``seed``; images
    resized to 32 x 32, grayscale repeated to RGB, scaled to [-1, 1]; the last 32 channels pooled to 2 x 2): a
    128-d feature space that downloads nothing and shares nothing with the adherence judge; each image's features are
    scaled to norm sqrt(128), so KID's kernel (x.y / d + 1)^3 works on their cosine (raw, x.y / d is ~0.1 on the
    digits and the kernel is nearly linear: a mean difference). Random embeddings
    separate real from generated images about as well as trained ones on small images (Naeem et al. 2020,
    "Reliable fidelity and diversity metrics for generative models", sec. 5); whether this one orders known damage
    on a dataset's real images is checked before it judges anything (:func:`t2i.evaluate.damage_check`). 128
    dimensions stay below the studies' N, where FD's finite-N bias is smaller."""

    WIDTHS = (32, 64, 32)

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        channels = (3, *self.WIDTHS)
        self.weights = [
            torch.randn(o, i, 3, 3, generator=g) * (2 / (9 * i)) ** 0.5 for i, o in zip(channels, channels[1:])
        ]
        self.name = f"random-cnn{seed}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        """Images uint8 [N, C, H, W] (C = 1 or 3)."""
        x = images.float() / 255
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False) * 2 - 1
        for k, w in enumerate(self.weights):
            x = torch.relu(torch.nn.functional.conv2d(x, w, padding=1))
            x = (
                torch.nn.functional.avg_pool2d(x, 2)
                if k < len(self.weights) - 1
                else torch.nn.functional.adaptive_avg_pool2d(x, 2)
            )
        x = x.flatten(1).double()
        return Features((x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * x.shape[1] ** 0.5).numpy(), None)


def frechet_distance(a: Features, b: Features) -> float:
    """FID between two feature sets (pytorch-fid's formula); NaN, with a warning, where pytorch-fid finds the
    covariance product's square root not real: with fewer images than feature dimensions the covariances are
    singular and FID is undefined (KID is the number to read there)."""
    try:
        return float(calculate_frechet_distance(*_stats(a.features), *_stats(b.features)))
    except ValueError as exc:
        if "Imaginary component" not in str(exc):
            raise
        warnings.warn(
            f"FID undefined for {len(a)} vs {len(b)} images of {a.features.shape[1]}-d features "
            f"(pytorch-fid: {exc}); reported as NaN",
            stacklevel=2,
        )
        return float("nan")


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two samples with the KID kernel k(a, b) = (a.b / d + 1)^3."""
    n, m, d = len(x), len(y), x.shape[1]
    k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)) - 2 * k_xy.mean()
    )


def kernel_inception_distance(
    a: Features, b: Features, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: :func:`mmd2_unbiased`, mean and std over ``subsets`` random subsets drawn from each side.

    Subsets hold ``min(subset_size, N // 2)`` samples: at most 1,000 as is standard, and at most half of the smaller
    set, so that at small N the subsets still differ and the std says something."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, max(2, min(len(a), len(b)) // 2))
    values = [
        mmd2_unbiased(
            a.features[rng.choice(len(a), m, replace=False)], b.features[rng.choice(len(b), m, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def inception_score(features: Features, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` equal parts of a fixed random permutation (the
    images of a sweep come ordered by prompt; contiguous splits would each hold one class)."""
    if features.logits is None:
        raise ValueError("this extractor has no classifier head: no Inception Score")
    logits = features.logits - features.logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = p[np.random.default_rng(seed).permutation(len(p))]
    scores = []
    for part in np.array_split(p, min(splits, len(p))):
        p_y = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(p_y + 1e-12))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def cached_features(extractor, images_fn, key: dict, cache_dir: Path | None = None) -> Features:
    """Features of a reference image set, computed once per ``key`` (dataset, split, resolution, extractor, N...)
    and cached as ``<cache_dir>/<hash>.npz`` with the key inside; any change to the key is a new file."""
    cache_dir = Path(cache_dir or paths.data_dir() / "reference_features")
    key = {**key, "extractor": extractor.name}
    blob = json.dumps(key, sort_keys=True)
    path = cache_dir / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as cached:
            if str(cached["key"]) == blob:
                return Features(cached["features"], cached["logits"] if cached["logits"].size else None)
    features = extractor(images_fn())
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        key=blob,
        features=features.features,
        logits=features.logits if features.logits is not None else np.empty(0),
    )
    tmp.replace(path)
    return features


class ClipScorer:
    """CLIP score = 100 * max(cos(image, text), 0) (Hessel et al. 2021), averaged over images.

    By default scored with openai/clip-vit-base-patch16, a different model from the ViT-B/32 that conditions the
    UNet: scoring with the conditioning encoder would reward the model for matching its own text features.
    """

    def __init__(self, model: str = "openai/clip-vit-base-patch16", device: torch.device | str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        try:
            pinned = hub.revision(model)  # t2i.hub
            self.model = CLIPModel.from_pretrained(model, revision=pinned).eval().to(device)
            self.processor = CLIPProcessor.from_pretrained(model, revision=pinned)
        except OSError as exc:
            raise MissingAsset(
                f"CLIP model {model!r} is not staged locally; run `make assets` on a node with "
                "internet, or pass a local directory"
            ) from exc
        self.name, self.device = model, torch.device(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str], batch_size: int = 64) -> float:
        """Mean CLIP score of images [N, C, H, W] in [0, 1] against their prompts."""
        scores = []
        for start in progress(
            range(0, len(prompts), batch_size), desc="CLIP score", disable=len(prompts) <= batch_size
        ):
            batch = to_uint8(images[start : start + batch_size])
            if batch.shape[1] == 1:
                batch = batch.repeat(1, 3, 1, 1)
            inputs = self.processor(
                text=prompts[start : start + batch_size],
                images=list(batch),
                return_tensors="pt",
                padding=True,
                truncation=True,
            ).to(self.device)
            out = self.model(**inputs)  # image_embeds / text_embeds: the projected CLIP embeddings
            cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
            scores.append(100 * cos.clamp(min=0))
        return torch.cat(scores).mean().item()
