"""Weak models made from the model itself, for the guidance methods that act inside the network (:mod:`t2i.guidance`):
the same UNet, degraded while it runs, gives the weak prediction; guidance pushes away from it.

- **PAG**, perturbed-attention guidance (Ahn et al., ECCV 2024, eq. 9): the self-attention map of chosen layers
  replaced by the identity, so each token's output is its own value (diffusers' ``PAGIdentitySelfAttnProcessor2_0``
  on the perturbed half of its batch).
- **SEG**, smoothed energy guidance (Hong, NeurIPS 2024): the self-attention queries of chosen layers blurred across
  the image by a 2-D Gaussian of std ``sigma`` tokens; ``sigma = inf`` makes every query their mean, so the attention
  weights are uniform over the keys (the paper's limit, and diffusers' default).
- **SWG**, sliding-window guidance (Adaloglou et al., BMVC 2025, the authors' ``swg_guidance``): the network on
  ``steps`` x ``steps`` overlapping square crops of x_t of side ``crop`` (a fraction of the image, 0.625 in the
  paper), averaged where they overlap; its receptive field stops at the crop. M-SWG (``mask``) guides only where
  crops overlap. A crop is rounded down to a multiple of the UNet's downsampling factor (its side must divide); where
  that leaves no overlap at ``steps``, the least count that overlaps is used (the evaluations counted say so).

PAG and SEG act on the layers of :data:`LAYERS` (diffusers' pipelines default to the mid block); their processors
are swapped in for the weak call only and restored after it, whatever happens. Every call of the network, each crop
included, goes through the counter the pipeline gives (:class:`t2i.sampling.Evaluations`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .errors import ConfigError
from .sampling import EpsModel, unet_eps

LAYERS = "mid_block."  # where PAG and SEG perturb self-attention: the mid block's (diffusers' pag_applied_layers="mid")


def self_attention(unet: torch.nn.Module, prefix: str = LAYERS) -> list[str]:
    """The processor names of the UNet's self-attention layers (``attn1``) under ``prefix``."""
    found = [k for k in unet.attn_processors if k.startswith(prefix) and k.endswith(".attn1.processor")]
    if not found:
        raise ConfigError(f"the UNet has no self-attention under {prefix!r}: PAG and SEG need one (a CrossAttn block)")
    return found


def _plain(attn, hidden_states: torch.Tensor) -> None:
    """The processors below handle what a transformer block's self-attention gives them, and refuse anything else."""
    if (
        hidden_states.ndim != 3
        or attn.group_norm is not None
        or attn.spatial_norm is not None
        or attn.norm_q is not None
        or attn.residual_connection
        or attn.is_cross_attention
    ):
        raise ConfigError("PAG and SEG perturb a transformer block's plain self-attention; this layer is another kind")
    if hidden_states.shape[1] < 2:  # softmax over one key is 1 and a blur of one query is itself: nothing to perturb
        raise ConfigError(
            "PAG and SEG perturb self-attention, which sees one token at this image size (the UNet's "
            "mid block): the weak prediction would be the conditional one, so the guidance would do "
            "nothing. Use a larger image or another method"
        )


def _out(attn, hidden_states: torch.Tensor) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](hidden_states)) / attn.rescale_output_factor


class IdentityAttention:
    """PAG's perturbed self-attention: the identity attention map, output = to_out(to_v(h))."""

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        _plain(attn, hidden_states)
        return _out(attn, attn.to_v(hidden_states))


def blur_tokens(tokens: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur [B, N, C] tokens of a square image across its N = side x side positions with a Gaussian of std ``sigma``
    positions (reflected at the borders, kernel up to 6 sigma, odd, at most the side); ``inf``: their mean."""
    b, n, c = tokens.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ConfigError(f"SEG blurs the queries of a square image; {n} tokens are not one")
    if math.isinf(sigma):
        return tokens.mean(dim=1, keepdim=True).expand_as(tokens)
    size = min(math.ceil(6 * sigma) // 2 * 2 + 1, side - (side % 2 - 1))  # diffusers: odd, up to side + 1
    if size < 3:
        return tokens
    grid = tokens.transpose(1, 2).reshape(b, c, side, side)
    blurred = gaussian_blur2d(grid, (size, size), (sigma, sigma), border_type="reflect")
    return blurred.reshape(b, c, n).transpose(1, 2)


class BlurredQueryAttention:
    """SEG's perturbed self-attention: scaled dot-product attention with the queries blurred (:func:`blur_tokens`)."""

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        _plain(attn, hidden_states)
        b, n, _ = hidden_states.shape
        q = blur_tokens(attn.to_q(hidden_states), self.sigma)
        k, v = attn.to_k(hidden_states), attn.to_v(hidden_states)
        q, k, v = (x.view(b, n, attn.heads, -1).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        return _out(attn, out.transpose(1, 2).reshape(b, n, -1).to(q.dtype))


class Swapped:
    """The UNet with some attention processors swapped in for one call, then the originals back."""

    def __init__(self, unet: torch.nn.Module, processors: dict, count: Callable[[EpsModel], EpsModel]):
        self.unet, self.processors, self.model = unet, processors, count(unet_eps(unet))

    def __call__(self, x: torch.Tensor, t, emb: torch.Tensor) -> torch.Tensor:
        saved = self.unet.attn_processors
        self.unet.set_attn_processor({**saved, **self.processors})
        try:
            return self.model(x, t, emb)
        finally:
            self.unet.set_attn_processor(saved)

    def mask(self, x: torch.Tensor) -> None:
        return None


def factor(unet: torch.nn.Module) -> int:
    """How much the UNet downsamples: a crop's side must be a multiple of it."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


class Windows:
    """SWG's weak model: the network on overlapping square crops, averaged where they overlap."""

    def __init__(self, model: EpsModel, multiple: int, crop: float, steps: int, mask: bool):
        self.model, self.multiple, self.crop, self.steps, self.masked = model, multiple, crop, int(steps), mask

    def layout(self, size: int) -> tuple[int, list[int]]:
        """The crop's side and the crops' offsets along one axis, for an image of side ``size``."""
        side = int(self.crop * size) // self.multiple * self.multiple
        if not self.multiple <= side < size:
            raise ConfigError(
                f"SWG: a crop of {self.crop:g} x {size} px is not a multiple of the UNet's "
                f"downsampling factor {self.multiple} below the image's side"
            )
        steps = max(self.steps, 2)
        while (size - side) / (steps - 1) >= side and steps < size:  # no overlap: more crops until they do
            steps += 1
        stride = (size - side) // (steps - 1)
        return side, [stride * i for i in range(steps - 1)] + [size - side]

    def __call__(self, x: torch.Tensor, t, emb: torch.Tensor) -> torch.Tensor:
        side, offsets = self.layout(x.shape[-1])
        corners = [(i, j) for i in offsets for j in offsets]
        crops = torch.cat([x[..., i : i + side, j : j + side] for i, j in corners])
        t = t if torch.as_tensor(t).ndim == 0 else t.repeat(len(corners))
        out = self.model(crops, t, emb.repeat(len(corners), *(1,) * (emb.ndim - 1))).chunk(len(corners))
        total, count = torch.zeros_like(x), torch.zeros_like(x[:1, :1])
        for (i, j), y in zip(corners, out):
            total[..., i : i + side, j : j + side] += y
            count[..., i : i + side, j : j + side] += 1
        return total / count

    def mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """M-SWG: 1 where crops overlap, 0 elsewhere (None: guide everywhere)."""
        if not self.masked:
            return None
        side, offsets = self.layout(x.shape[-1])
        count = torch.zeros_like(x[:1, :1])
        for i in offsets:
            for j in offsets:
                count[..., i : i + side, j : j + side] += 1
        return (count > 1).to(x.dtype)


def weak_model(
    unet: torch.nn.Module, kind: str, params: dict[str, float], count: Callable[[EpsModel], EpsModel] = lambda m: m
) -> Swapped | Windows:
    """The weak model of ``kind`` ("pag", "seg" or "swg") for ``unet``, each network call through ``count``."""
    if kind == "pag":
        return Swapped(unet, {k: IdentityAttention() for k in self_attention(unet)}, count)
    if kind == "seg":
        return Swapped(unet, {k: BlurredQueryAttention(params["sigma"]) for k in self_attention(unet)}, count)
    if kind == "swg":
        return Windows(count(unet_eps(unet)), factor(unet), params["crop"], int(params["steps"]), bool(params["mask"]))
    raise ConfigError(f"unknown in-network perturbation {kind!r}: pag, seg or swg")
