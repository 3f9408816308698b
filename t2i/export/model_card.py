"""The model card of an export (huggingface_hub's ``ModelCard``) and its LICENSE.md: what the model is, how it was
trained, how well it does (only numbers measured from the exported weights), intended use, limitations, and the data's
terms, which the weights carry."""

from __future__ import annotations

import csv
from pathlib import Path

from .. import checkpoints, data, hub, paths, reports
from ..errors import UserError
from ..experiment import Run
from ..models import count_parameters
from ..pipeline import TextToImage
from ..text import public_id
from ..vae import SYNTHETIC


def synthetic_data(cfg) -> bool:
    """Was the run trained on data t2i made up (the smoke profiles' shards or tiny VAE)?"""
    return bool((cfg.shards or "").startswith("synthetic/")) or cfg.vae == SYNTHETIC


def data_terms(cfg) -> tuple[str, str, str]:
    """The terms of the run's dataset (its spec's ``terms``), or a one-line error naming what to add."""
    spec = data.spec(cfg)
    if spec.terms is None or spec.card_id is None:
        raise UserError(
            f"cannot export a model of dataset {cfg.dataset!r}: t2i/data/{cfg.dataset}.py's DATASET does "
            "not say its terms and card id (`terms`, `card_id`; docs/development.md), which the card and "
            "LICENSE.md state"
        )
    return spec.terms


def license_text(cfg) -> str:
    """LICENSE.md: the data's terms, which the weights, derived from the data, carry."""
    _, terms, source = data_terms(cfg)
    if synthetic_data(cfg):
        return (
            "# License\n\nThese weights were trained on synthetic data that t2i's tests write; they model nothing "
            "real and are for testing t2i only.\n"
        )
    return (
        f"# License\n\nThese weights were trained on {cfg.dataset}. {terms} ({source}). Use the weights under the "
        "same terms: they are derived from that data.\n"
    )


def card(pipe: TextToImage, run: Run, where: str):
    """The model card: what the model is, how it was trained, how well it does (only numbers measured from these
    weights), intended use, limitations and license."""
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import EvalResult

    cfg = pipe.cfg
    spec = data.spec(cfg)
    synthetic = synthetic_data(cfg)
    spdx, terms, source = data_terms(cfg)
    dataset = spec.card_id
    sweep, rows, record = evaluation(run, pipe)
    features = (record or {}).get("features", "unknown")
    results = [
        EvalResult(
            task_type="text-to-image",
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=metric,
            metric_name=f"{name} at w={row['guidance_scale']} (N={row['samples']})",
            metric_value=float(row[metric]),
        )
        for row in rows
        if row["guidance_scale"] != "real"
        for metric, name in (("fid", f"FD in {features} features"), ("adherence", "adherence"))
    ]
    license_fields = (
        {"license": spdx}
        if spdx != "other" and not synthetic
        else {
            "license": "other",
            "license_name": "synthetic-test-data" if synthetic else f"{cfg.dataset}-terms",
            "license_link": "LICENSE.md",
        }
    )
    metadata = ModelCardData(
        library_name="diffusers",
        pipeline_tag="text-to-image",
        **license_fields,
        datasets=None if synthetic else [dataset],
        tags=["text-to-image", "diffusers", "classifier-free-guidance", "t2i"],
        model_name=f"t2i-{cfg.experiment}-{run.name}",
        eval_results=results or None,
    )
    state = checkpoints.load_state(pipe.checkpoint)
    weights_text = {"ema": f"EMA, decay {cfg.ema_decay:g}", "raw": "the trained weights"}.get(
        pipe.weights, pipe.weights
    )
    images_seen = state["step"] * cfg.batch_size * state.get("num_processes", 1) * cfg.gradient_accumulation_steps
    train_size = f"{cfg.train_subset:,} images (train_subset)" if cfg.train_subset else "the whole training split"
    text_encoder, vae = public_id(cfg.text_encoder), cfg.vae
    usage = (
        f"from diffusers import DDPMScheduler, StableDiffusionPipeline\n\npipe = StableDiffusionPipeline."
        f'from_pretrained("{where}", safety_checker=None)\n'
        f"pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, steps_offset=0)"
        f"  # t2i's timesteps\n"
        if pipe.codec is not None
        else f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("{where}", '
        f"trust_remote_code=True)\n"
    )
    usage += (
        f'image = pipe("{cfg.captions[0]}", guidance_scale={cfg.sample_guidance_scale:g}, '
        f"num_inference_steps={pipe.steps_at(cfg.sample_guidance_scale)}).images[0]\n"
    )
    real = next((r for r in rows if r["guidance_scale"] == "real"), None)
    evaluation_text = (
        "Not evaluated: no `make eval` sweep was made from these weights (its provenance must carry this checkpoint's "
        "manifest hash). Run `make eval RUN=...` and export again."
        if not rows
        else f"From `make eval` on these weights (`{paths.portable(sweep)}`), N = {rows[0]['samples']} images per row. "
        f"**FD** is the Frechet distance in **{features}** features (comparable only within that feature space), "
        f"against N real training images; the real-vs-real floor at this N is {float(real['fid']):.2f}. "
        f"**Adherence**: {spec.adherence_meaning(cfg)}; the same judge scores {float(real['adherence']):.3f} on real "
        "held-out images.\n\n"
        + "\n".join(
            f"- w = {r['guidance_scale']}: FD {float(r['fid']):.2f}, adherence {float(r['adherence']):.3f}"
            for r in rows
            if r["guidance_scale"] != "real"
        )
    )
    differences = (
        ""
        if pipe.codec is None
        else "\n\n**Differences from t2i's own sampler.** `StableDiffusionPipeline` forces `steps_offset = 1` "
        "(every timestep one later than t2i's); the scheduler line above sets it back, after which its "
        "images match t2i's at w = 1 and above. It guides only when `guidance_scale > 1`, where t2i's w in "
        "[0, 1) moves towards the unconditional model."
    )
    data_line = (
        "synthetic shards written by t2i's tests (not a real dataset)"
        if synthetic
        else f"[{dataset}]({source}) ({train_size})"
    )
    frozen = ", ".join(f"`{m}`" for m in (text_encoder, vae) if m and m != SYNTHETIC)
    text = f"""---
{metadata.to_yaml()}
---

# t2i {cfg.experiment}: {run.name}

A {count_parameters(pipe.unet, trainable_only=False):,}-parameter diffusers `UNet2DConditionModel` trained from scratch
with t2i ({cfg.experiment}, profile `{cfg.profile}`), conditioned through cross-attention on the
frozen text encoder {frozen}{" (frozen VAE: latent diffusion)" if pipe.codec is not None else ""}, and sampled with
classifier-free guidance `eps_u + w (eps_c - eps_u)` (w = 0 unconditional, w = 1 conditional).

## Usage

```python
{usage}```{differences}

Output: {cfg.resolution}x{cfg.resolution} images with {3 if pipe.codec is not None else cfg.channels} channel(s).

## Training

| setting | value |
|---|---|
| data | {data_line}, {cfg.resolution}x{cfg.resolution}, pixels in {list(cfg.pixel_range)} |
| captions | `{cfg.caption_template}` over {len(cfg.class_names)} classes |
| UNet | blocks {list(cfg.block_out_channels)}, {cfg.layers_per_block} layers per block, trained from scratch |
| diffusion | {cfg.num_train_timesteps} steps, `{cfg.beta_schedule}` betas, sampled with {pipe.sampling.describe()} |
| training | {state["epoch"]} epochs, {state["step"]:,} optimizer steps, {images_seen:,} images seen, \
batch {cfg.batch_size}, p_uncond {cfg.p_uncond:g} |
| optimizer | AdamW, lr {cfg.learning_rate:g} ({cfg.lr_schedule}, {cfg.lr_warmup_steps} warm-up steps), \
weight decay {cfg.weight_decay:g} |
| weights | {weights_text}, checkpoint {pipe.checkpoint.name} |
| seed, precision | {cfg.seed}, {state.get("precision", cfg.mixed_precision)} on \
{state.get("num_processes", 1)} process(es) |
| hardware, time | {state.get("device", "not recorded")}, {_duration(state.get("train_seconds"))} |

## Evaluation

{evaluation_text}

![samples](samples.png)

## Intended use and limitations

A research artefact: it reproduces an experiment of a thesis on classifier-free guidance with t2i, at
{cfg.resolution}x{cfg.resolution}. It draws only what its {len(cfg.class_names)} \
caption{"s" if len(cfg.class_names) > 1 else ""}
describe, in the style of its training data; other prompts give unpredictable images. It has no safety filter.
{"It was trained on synthetic test data and draws nothing real." if synthetic else ""}

## License

{license_text(cfg).split(chr(10), 2)[-1].strip()} See LICENSE.md.

## Provenance

Checkpoint `{pipe.checkpoint.name}`, manifest SHA-256 `{checkpoints.manifest_sha256(pipe.checkpoint)}`; exported at t2i
commit `{reports.git_commit()}`; frozen components: text encoder `{public_id(hub.describe(cfg.text_encoder))}`, VAE
`{hub.describe(cfg.vae)}`.
"""
    return ModelCard(text)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "time not recorded (checkpoint written before t2i recorded it)"
    return f"{seconds / 3600:.2f} h of training" if seconds >= 360 else f"{seconds:.0f} s of training"


def evaluation(run: Run, pipe: TextToImage) -> tuple[Path | None, list[dict], dict | None]:
    """The run's `make eval` sweep if it was made from exactly these weights: its provenance records the checkpoint
    manifest's hash and the weights; a sweep of another checkpoint, or of another run that shares the name, is never
    quoted."""
    sweep = paths.sweep_table(run.dir)
    record = reports.read_provenance(sweep.with_suffix(".md")) if sweep.exists() else None
    if (
        not record
        or record.get("checkpoint_manifest_sha256") != checkpoints.manifest_sha256(pipe.checkpoint)
        or record.get("weights") != pipe.weights
    ):
        return None, [], None
    with open(sweep) as f:
        return sweep, list(csv.DictReader(f)), record
