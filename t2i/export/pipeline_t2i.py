"""T2IPipeline: a text-to-image pipeline for runs trained with t2i, as a diffusers ``DiffusionPipeline``.

Self-contained on purpose (torch, diffusers and transformers only): an exported folder carries a copy of this file and
names it in ``model_index.json`` (``"_class_name": ["pipeline_t2i", "T2IPipeline"]``), so plain diffusers loads it the
Hub's usual way, ``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)``. It samples exactly as
t2i does: prompts padded to ``max_tokens`` with their attention mask, the empty prompt (or ``negative_prompt``) as the
unconditional one, guidance ``eps_u + w (eps_c - eps_u)`` (w = 0 unconditional, w = 1 conditional, computed alone),
every x0 prediction clipped to the training pixel range when the run clips (``clip_x0``, as t2i.sampling does), images
mapped from that range (or decoded by the VAE) to [0, 1]. ``torch_dtype`` at loading and
``num_images_per_prompt`` at sampling work as in diffusers' own pipelines.
"""

from __future__ import annotations

import math

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor


class T2IPipeline(DiffusionPipeline):
    _optional_components = ["vae"]  # pixel-space runs have none

    def __init__(
        self,
        unet,
        scheduler,
        text_encoder,
        tokenizer,
        vae=None,
        max_tokens: int = 77,
        pixel_low: float = -1.0,
        pixel_high: float = 1.0,
        clip_x0: bool = False,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)
        self.register_to_config(max_tokens=max_tokens, pixel_low=pixel_low, pixel_high=pixel_high, clip_x0=clip_x0)

    def alpha_at(self, t) -> float:
        """alphabar at timestep t, interpolated in log sigma between integer timesteps (t2i.sampling.alpha_at)."""
        alphas, t = self.scheduler.alphas_cumprod, float(t)
        low = min(max(int(math.floor(t)), 0), len(alphas) - 1)
        high = min(low + 1, len(alphas) - 1)
        a_low, a_high = float(alphas[low]), float(alphas[high])
        if t == low or high == low:
            return a_low
        log_sigma = [0.5 * math.log((1 - a) / a) for a in (a_low, a_high)]
        sigma = math.exp(log_sigma[0] + (t - low) * (log_sigma[1] - log_sigma[0]))
        return 1 / (1 + sigma * sigma)

    def clipped(self, eps: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The eps whose x0 is the one ``eps`` implies, clipped to the pixel range (t2i.sampling.clip_x0)."""
        alpha = self.alpha_at(t)
        a, s = math.sqrt(alpha), math.sqrt(1 - alpha)
        x0 = ((x_t - s * eps) / a).clamp(self.config.pixel_low, self.config.pixel_high)
        return (x_t - a * x0) / s

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.config.max_tokens, truncation=True, return_tensors="pt"
        )
        return self.text_encoder(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        ).last_hidden_state

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        guidance_scale: float = 5.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        num_images_per_prompt: int = 1,
        negative_prompt: str | list[str] | None = None,
    ):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = (
            [""]
            if negative_prompt is None
            else [negative_prompt]
            if isinstance(negative_prompt, str)
            else list(negative_prompt)
        )
        if len(negatives) not in (1, len(prompts) // num_images_per_prompt):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts) // num_images_per_prompt} prompts")
        negatives = [n for n in negatives for _ in range(num_images_per_prompt)] if len(negatives) > 1 else negatives
        dtype = self.unet.dtype
        cond = self.embed(prompts).to(dtype)
        uncond = self.embed(negatives).to(dtype).expand_as(cond)
        w = float(guidance_scale)
        shape = (len(prompts), self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        x = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        x = x * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(x, t).to(dtype)
            if w == 0.0:
                eps = self.unet(model_input, t, encoder_hidden_states=uncond).sample
            elif w == 1.0:
                eps = self.unet(model_input, t, encoder_hidden_states=cond).sample
            else:
                eps_uncond, eps_cond = self.unet(
                    torch.cat([model_input, model_input]), t, encoder_hidden_states=torch.cat([uncond, cond])
                ).sample.chunk(2)
                eps = eps_uncond + w * (eps_cond - eps_uncond)
            if self.config.clip_x0:
                eps = self.clipped(eps.float(), model_input.float(), t)
            x = self.scheduler.step(eps.float(), t, x, generator=generator).prev_sample  # the loop runs in float32
        if self.vae is not None:  # latents -> pixels in [-1, 1]
            x = torch.cat(
                [
                    self.vae.decode((z / self.vae.config.scaling_factor).to(self.vae.dtype)).sample.clamp(-1, 1)
                    for z in x.split(16)
                ]
            )
            low, high = -1.0, 1.0
        else:
            low, high = self.config.pixel_low, self.config.pixel_high
        images = ((x.float() - low) / (high - low)).clamp(0, 1).cpu()
        if output_type == "pil":
            images = self.numpy_to_pil(images.permute(0, 2, 3, 1).numpy())
        elif output_type == "np":
            images = images.permute(0, 2, 3, 1).numpy()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
