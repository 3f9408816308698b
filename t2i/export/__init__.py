"""Share a trained run the way diffusers users do: a pipeline folder, a model card, the Hub.

``python -m t2i export RUN OUT [--checkpoint NAME] [--weights ema|raw] [--push-to-hub REPO_ID [--private]]``
(``make export RUN=...``) writes a standard diffusers pipeline folder, every component a stock class saved with
``save_pretrained``:

- **latent runs** (CelebA) load in the stock ``StableDiffusionPipeline`` (no safety checker). What it reads
  differently from t2i is set: the tokenizer's ``model_max_length`` (the run's ``max_tokens``), the text encoder's
  ``use_attention_mask`` (t2i always passes the mask), the VAE's scaling factor (its own config) and the scheduler's
  "leading" spacing. Two differences remain and are stated in the card: the stock pipeline forces
  ``steps_offset = 1`` (every timestep one later than t2i's), and it applies guidance only when
  ``guidance_scale > 1`` (t2i's w in [0, 1) interpolates towards the unconditional model; w = 1 is the same);
- **pixel runs** (MNIST, CIFAR-10, WikiArt) use :class:`T2IPipeline` (``pipeline_t2i.py``, copied into the folder),
  loadable with t2i installed (``T2IPipeline.from_pretrained(OUT)``) or with plain diffusers
  (``DiffusionPipeline.from_pretrained(OUT, custom_pipeline=OUT + "/pipeline_t2i.py")``). It samples exactly as
  t2i does (tests/test_export.py compares the images).

``README.md`` is a model card built with huggingface_hub's ``ModelCard``: the config that matters, the run's newest
evaluation (as ``eval_results``, with N and the real-vs-real floor) when it was made from the exported checkpoint,
a sample grid, the provenance, and a usage snippet.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

from diffusers import StableDiffusionPipeline

from .. import checkpoints, hub, paths, reports
from ..errors import UserError
from ..models import count_parameters
from ..experiment import Run
from ..pipeline import TextToImage
from ..sampling import make_scheduler
from .pipeline_t2i import T2IPipeline

__all__ = ["T2IPipeline", "export", "push"]


def export(run: Run, out: Path, checkpoint: str | None = None, weights: str = "ema") -> Path:
    """Write ``run`` (its newest checkpoint, or ``checkpoint``) as a diffusers pipeline folder ``out``."""
    run_dir, out = run.dir, Path(out)
    if weights not in ("ema", "raw"):
        raise UserError(f"--weights {weights!r}: choose ema or raw")
    pipe = run.pipeline(checkpoint=checkpoint, ema=weights == "ema", device="cpu")
    cfg = pipe.cfg
    tokenizer, encoder = pipe.text.tokenizer, pipe.text.model
    tokenizer.model_max_length = cfg.max_tokens
    encoder.config.use_attention_mask = True  # the stock pipeline passes the mask only if told to; t2i always does
    scheduler = make_scheduler(cfg.sampler, cfg)
    if pipe.codec is not None:
        exported = StableDiffusionPipeline(vae=pipe.codec.vae, text_encoder=encoder, tokenizer=tokenizer, unet=pipe.unet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    else:
        exported = T2IPipeline(unet=pipe.unet, scheduler=scheduler, text_encoder=encoder, tokenizer=tokenizer,
                               max_tokens=cfg.max_tokens, pixel_low=cfg.pixel_range[0], pixel_high=cfg.pixel_range[1])
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    exported.save_pretrained(out)
    if pipe.codec is None:
        shutil.copy(Path(__file__).with_name("pipeline_t2i.py"), out / "pipeline_t2i.py")
    (out / "t2i_config.json").write_text(cfg.to_json() + "\n")
    grid = out / "samples.png"
    prompts = [p for p in cfg.captions[:4] for _ in range(4)]
    reports.image_grid(pipe.images(prompts, cfg.sample_guidance_scale, show_progress=False), grid, nrow=4,
                       title=f"w = {cfg.sample_guidance_scale:g}", row_labels=cfg.captions[:4])
    card(pipe, run_dir, out, weights).save(out / "README.md")
    print(f"exported {run_dir} ({pipe.checkpoint.name}, {weights} weights) to {out}")
    return out


def card(pipe: TextToImage, run_dir: Path, out: Path, weights: str):
    """The model card: what the model is, how it was trained, how well it does (only measured numbers)."""
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import EvalResult

    cfg = pipe.cfg
    sweep, rows = _newest_sweep(run_dir, pipe.checkpoint)
    dataset = {"mnist": "mnist", "digits": "sklearn-digits", "cifar10": "uoft-cs/cifar10", "wikiart": "huggan/wikiart",
               "celeba": "flwrlabs/celeba"}[cfg.dataset]
    results = [EvalResult(task_type="text-to-image", dataset_type=dataset, dataset_name=dataset,
                          metric_type=metric, metric_name=f"{metric} at w={row['guidance_scale']} (N={row['samples']})",
                          metric_value=float(row[metric]))
               for row in rows if row["guidance_scale"] != "real" for metric in ("fid", "adherence")]
    data = ModelCardData(library_name="diffusers", pipeline_tag="text-to-image", license="other",
                         datasets=[dataset], tags=["text-to-image", "diffusers", "classifier-free-guidance", "t2i"],
                         base_model=[m for m in (cfg.text_encoder, cfg.vae) if m and hub.revision(m)] or None,
                         model_name=f"t2i-{cfg.experiment}-{run_dir.name}", eval_results=results or None)
    manifest = pipe.checkpoint / checkpoints.MANIFEST
    usage = (f'from diffusers import StableDiffusionPipeline\n\npipe = StableDiffusionPipeline.from_pretrained("{out}")\n'
             if pipe.codec is not None else
             f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained(\n    "{out}", '
             f'custom_pipeline="{out}/pipeline_t2i.py", trust_remote_code=True)\n')
    usage += (f'image = pipe("{cfg.captions[0]}", guidance_scale={cfg.sample_guidance_scale:g}, '
              f"num_inference_steps={cfg.num_inference_steps}).images[0]\n")
    real = next((r for r in rows if r["guidance_scale"] == "real"), None)
    evaluation = ("No evaluation was made from this checkpoint (run `make eval RUN=...` and export again)." if not rows
                  else f"From `{paths.portable(sweep)}` (features: see its caption), N = {rows[0]['samples']} per "
                       f"row; the real-vs-real floor is FID {float(real['fid']):.2f}, adherence "
                       f"{float(real['adherence']):.3f} on held-out images.\n\n"
                       + "\n".join(f"- w = {r['guidance_scale']}: FID {float(r['fid']):.2f}, adherence "
                                   f"{float(r['adherence']):.3f}" for r in rows if r["guidance_scale"] != "real"))
    differences = ("" if pipe.codec is None else
                   "\n\n**Differences from t2i's own sampler** (`StableDiffusionPipeline` forces them): every timestep "
                   "is one later (`steps_offset = 1`), and guidance is applied only when `guidance_scale > 1` (t2i's "
                   "w in [0, 1) moves towards the unconditional model; w = 1 and w > 1 are the same formula).")
    text = f"""---
{data.to_yaml()}
---

# t2i {cfg.experiment}: {run_dir.name}

A {count_parameters(pipe.unet, trainable_only=False):,}-parameter diffusers `UNet2DConditionModel` trained with
t2i ({cfg.experiment}, profile `{cfg.profile}`), conditioned on `{cfg.text_encoder}` through
cross-attention, sampled with classifier-free guidance `eps_u + w (eps_c - eps_u)`.

## Usage

```python
{usage}```{differences}

## Training

| setting | value |
|---|---|
| data | {cfg.dataset}, {cfg.resolution}x{cfg.resolution}, {cfg.channels} channel(s), pixels in {list(cfg.pixel_range)} |
| captions | `{cfg.caption_template}` over {len(cfg.class_names)} classes |
| UNet | blocks {list(cfg.block_out_channels)}, {cfg.layers_per_block} layers per block |
| diffusion | {cfg.num_train_timesteps} steps, `{cfg.beta_schedule}` betas, {cfg.sampler} x {cfg.num_inference_steps} to sample |
| training | {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.learning_rate:g}, p_uncond {cfg.p_uncond:g}, precision {cfg.mixed_precision} |
| weights | {weights} ({pipe.checkpoint.name}) |

## Evaluation

{evaluation}

![samples](samples.png)

## Provenance

Checkpoint `{pipe.checkpoint.name}`, manifest SHA-256 `{hashlib.sha256(manifest.read_bytes()).hexdigest()}`;
exported at commit `{reports.git_commit()}`; assets: {json.dumps(pipe.provenance()["assets"])}.
"""
    return ModelCard(text)


def _newest_sweep(run_dir: Path, checkpoint: Path) -> tuple[Path | None, list[dict]]:
    """The run's `make eval` sweep, if it was made from this checkpoint (else no numbers: none is invented)."""
    sweep = paths.sweep_table(run_dir)
    record = reports.read_provenance(sweep.with_suffix(".md")) if sweep.exists() else None
    if not record or Path(str(record.get("checkpoint", ""))).name != checkpoint.name:
        return None, []
    with open(sweep) as f:
        return sweep, list(csv.DictReader(f))


def push(folder: Path, repo_id: str, private: bool = False) -> str:
    """``create_repo(exist_ok=True)`` and ``upload_folder``, as diffusers' training scripts publish; a one-line error
    where the Hub cannot be reached (compute nodes, HF_HUB_OFFLINE=1)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder)).commit_url
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        raise UserError(f"cannot push {folder} to {repo_id}: {' '.join(str(exc).split())[:200]} (log in with "
                        "`huggingface-cli login` on a machine with internet, with HF_HUB_OFFLINE unset)") from exc

