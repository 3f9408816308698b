"""The latent codec of Experiment 4 (thesis 3.5.4): a frozen diffusers ``AutoencoderKL``.

``stabilityai/sd-vae-ft-mse`` maps 256x256 RGB in [-1, 1] to 4x32x32 latents. The UNet is trained on
``z = scaling_factor * latent`` (0.18215, read from the VAE's config, never typed in) so that latents have roughly
unit variance, and sampling divides by it again before decoding.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from . import hub, paths
from .configs import ExperimentConfig
from .errors import MissingAsset
from .files import build_lock

SYNTHETIC = "synthetic:tiny-vae"


def resolve(name_or_path: str) -> str:
    """A hub id or folder as is; ``synthetic:tiny-vae`` (the smoke profile's VAE: random weights, same architecture
    family) is written under data/synthetic/ on first use, then loaded through the same ``from_pretrained`` path."""
    if name_or_path != SYNTHETIC:
        return name_or_path
    folder = paths.data_dir() / "synthetic" / "tiny-vae"
    with build_lock(folder):
        if not (folder / "config.json").exists():
            torch.manual_seed(0)
            AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(8, 8, 16, 16),
                layers_per_block=1,
                latent_channels=4,
                norm_num_groups=4,
                sample_size=64,
                scaling_factor=0.18215,
            ).save_pretrained(folder)
    return str(folder)


class LatentCodec:
    def __init__(self, vae: AutoencoderKL):
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.latent_channels = int(vae.config.latent_channels)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "LatentCodec":
        """A hub id (offline: from the Hugging Face cache that `make assets` filled) or a local folder."""
        try:
            vae = AutoencoderKL.from_pretrained(
                resolve(name_or_path), torch_dtype=dtype, revision=hub.revision(name_or_path)
            )  # pinned in t2i.hub
        except OSError as exc:
            raise MissingAsset(
                f"VAE {name_or_path!r} is not available offline; run `make assets EXPERIMENTS=celeba` on a node with "
                "internet (it fills the Hugging Face cache under HF_HOME), or pass a local folder"
            ) from exc
        return cls(vae.to(device))

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        return self.latent_channels, resolution // self.downsample, resolution // self.downsample

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of q(latent | image) (unscaled); images [N, 3, H, W] in [-1, 1]."""
        dist = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        return dist.mean, dist.std

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A scaled latent sample z = scaling_factor * (mean + std * eps)."""
        mean, std = self.posterior(images)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.scaling_factor * (mean + std * eps)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images [N, 3, H, W] in [-1, 1] (clamped)."""
        return self.vae.decode(z.to(self.device, self.dtype) / self.scaling_factor).sample.clamp(-1, 1)


def check_latent_shape(cfg: ExperimentConfig, codec: LatentCodec) -> None:
    """The config's latent shape must be what the VAE produces at the config's resolution."""
    if codec.latent_shape(cfg.resolution) != cfg.model_shape:
        raise ValueError(
            f"VAE {cfg.vae!r} makes latents of shape {codec.latent_shape(cfg.resolution)} from "
            f"{cfg.resolution} px images, the config expects {cfg.model_shape}: set latent_channels / "
            "latent_downsample to match the VAE"
        )
