"""Image bytes -> a square RGB uint8 array at the training resolution, or a :class:`BadSample` saying why not.

Large JPEGs (WikiArt averages ~1,600 px) are decoded in PIL's *draft* mode: the JPEG decoder scales by 1/2, 1/4 or
1/8 in the DCT domain while decoding, to the smallest size still >= the target, which is several times faster than
decoding at full size and resizing. Then: convert to RGB (alpha is composited onto white, CMYK/L/P/I are
converted), resize the shorter side to the target and centre-crop (``ImageOps.fit``).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps


class BadSample(ValueError):
    """A row that cannot become a training example (unreadable image, missing or unknown label). The streaming
    dataset skips it, counts it and reports it; it never ends a run unless there are too many."""


def decode_image(data: bytes | None, resolution: int) -> np.ndarray:
    """``[resolution, resolution, 3]`` uint8 from encoded image bytes (JPEG, PNG, WebP, ...)."""
    if not data:
        raise BadSample("empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width == 0 or image.height == 0:
                raise BadSample(f"zero-size image ({image.width}x{image.height})")
            if image.format == "JPEG":
                image.draft(image.mode, (resolution, resolution))  # decode at >= target size, in the DCT domain
            image.load()  # truncated files open fine and fail here
            image = to_rgb(image)
    except BadSample:
        raise
    except Image.UnidentifiedImageError:  # its message names a BytesIO address: say it plainly, the same every time
        raise BadSample("unreadable image: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadSample(f"unreadable image: {type(exc).__name__}: {exc}") from None
    image = ImageOps.fit(image, (resolution, resolution), method=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent pixels composited onto white (a transparent background is not black paint)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):  # 16/32-bit grayscale: scale to 8 bits first
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array / peak * 255).round().astype(np.uint8), mode="L")
    return image.convert("RGB")


def to_tensor(array: np.ndarray, pixel_range: tuple[float, float]):
    """``[H, W, C]`` uint8 -> ``[C, H, W]`` float32 in ``pixel_range``."""
    low, high = pixel_range
    return torch.tensor(array).permute(2, 0, 1).float().div(255).mul(high - low).add(low)
