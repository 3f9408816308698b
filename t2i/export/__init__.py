"""Share a trained run the way diffusers users do: a pipeline folder, a model card, the Hub.

``python -m t2i export RUN OUT [--checkpoint NAME] [--weights ema|raw] [--overwrite] [--push-to-hub REPO_ID [--private |
--public]]`` (``make export RUN=...``) writes a standard diffusers pipeline folder, every component a stock class saved
with ``save_pretrained``:

- **latent runs** (CelebA) load in the stock ``StableDiffusionPipeline`` (no safety checker). What it reads
  differently from t2i is set: the tokenizer's ``model_max_length`` (the run's ``max_tokens``), the text encoder's
  ``use_attention_mask`` (t2i always passes the mask), the VAE's scaling factor (its own config) and the scheduler's
  "leading" spacing. Two differences remain and the card states them with the line that removes the first: the stock
  pipeline forces ``steps_offset = 1`` (every timestep one later than t2i's), and it guides only when
  ``guidance_scale > 1``;
- **pixel runs** (MNIST, CIFAR-10, WikiArt) use :class:`T2IPipeline` (``pipeline_t2i.py``, copied into the folder and
  named in ``model_index.json``), so ``DiffusionPipeline.from_pretrained(OUT_OR_REPO, trust_remote_code=True)`` loads
  them without t2i (t2i's own ``T2IPipeline.from_pretrained`` needs ``trust_remote_code=True`` too: the folder names its
  copy). It samples exactly as t2i does (tests/test_export.py compares the images).

Nothing is deleted that export did not write: OUT must be new or empty, or a folder an earlier export wrote (with
``--overwrite``, and only if it holds nothing but the files that export listed in its marker), and never one that holds
the run, the runs folder or the repository. OUT is taken literally: ``.``, an empty name and a symbolic link are
refused, a missing parent is created, all before any work. The folder is written beside OUT under a temporary name and
swapped in at the end, so a kill or a full disk leaves the previous export whole. One export per OUT runs at a time (a
lock file beside it, ``.<name>.export.lock``, held for the whole export): a second is refused in one line, and the
recovery of what a killed export left never touches a folder whose writer is alive.
``README.md`` is the model card (huggingface_hub's ``ModelCard``): what the model is, how it was trained, how well it
does when an evaluation was made from *these* weights (matched by the checkpoint manifest's hash), its intended use,
limitations and the data's terms.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

from diffusers import StableDiffusionPipeline

from .. import checkpoints, data, hub, paths, reports
from ..errors import UserError
from ..experiment import Run
from ..models import count_parameters
from ..pipeline import TextToImage
from ..sampling import make_scheduler, x0_range
from ..text import public_id
from ..vae import SYNTHETIC
from .folder import MARKER, check_out, check_target, exclusive, full_disk, recover, swap_in
from .pipeline_t2i import T2IPipeline

__all__ = ["T2IPipeline", "check_out", "check_push", "export", "push"]



def export(run: Run, out: Path, checkpoint: str | None = None, weights: str | None = None, *,
           overwrite: bool = False, repo_id: str | None = None, ema_length: float | None = None) -> Path:
    """Write ``run`` (its newest checkpoint, or ``checkpoint``) as a diffusers pipeline folder ``out``; ``repo_id``:
    the Hub repository it is pushed to, for the card's usage snippet; ``weights``: "ema" or "raw" (None: the run's
    default, the post-hoc EMA preset of `make ema` when it has one, else the EMA); ``ema_length``: a post-hoc EMA of
    that length instead (t2i.posthoc)."""
    out = Path(out)
    if weights not in (None, "ema", "raw"):
        raise UserError(f"--weights {weights!r}: choose ema or raw")
    check_out(out)
    with exclusive(out):
        recover(out)
        check_target(out, run.dir, overwrite)
        pipe = run.pipeline(checkpoint=checkpoint, ema=None if weights is None else weights == "ema", device="cpu",
                            ema_length=ema_length)
        tmp = out.with_name(f".{out.name}.export-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
            marker = {"run": paths.portable(run.dir), "checkpoint": pipe.checkpoint.name,
                      "manifest_sha256": checkpoints.manifest_sha256(pipe.checkpoint), "weights": pipe.weights}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")  # first: recovery knows the folder by it
            write_pipeline(pipe, tmp)
            grid = tmp / "samples.png"
            prompts = [p for p in pipe.cfg.captions[:4] for _ in range(4)]
            reports.image_grid(pipe.images(prompts, pipe.cfg.sample_guidance_scale, show_progress=False), grid,
                               nrow=4, title=f"w = {pipe.cfg.sample_guidance_scale:g}",
                               row_labels=pipe.cfg.captions[:4])
            (tmp / "LICENSE.md").write_text(license_text(pipe.cfg))
            card(pipe, run, repo_id or f"./{out.name}").save(tmp / "README.md")
            marker["files"] = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()) + [MARKER]
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")  # last: what --overwrite may replace
            swap_in(tmp, out)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # only what this export wrote; OUT is as it was
            if full_disk(exc):
                raise UserError(f"no space left on the device while exporting to {out} (writing {tmp}); the previous "
                                "export, if any, is untouched: free space and export again") from exc
            raise
    print(f"exported {run.dir} ({pipe.checkpoint.name}, {pipe.weights} weights) to {out}")
    return out


def write_pipeline(pipe: TextToImage, folder: Path) -> None:
    """The diffusers pipeline of ``pipe`` in ``folder``: stock components, and for pixel runs pipeline_t2i.py."""
    cfg = pipe.cfg
    tokenizer, encoder = pipe.text.tokenizer, pipe.text.model
    tokenizer.model_max_length = cfg.max_tokens
    encoder.config.use_attention_mask = True  # the stock pipeline passes the mask only if told to; t2i always does
    scheduler = make_scheduler(pipe.sampling, cfg)
    if pipe.codec is not None:
        with warnings.catch_warnings():  # it warns that steps_offset is not 1 (and sets it): the card says so
            warnings.filterwarnings("ignore", message="(?s).*steps_offset", category=FutureWarning)
            exported = StableDiffusionPipeline(vae=pipe.codec.vae, text_encoder=encoder, tokenizer=tokenizer,
                                               unet=pipe.unet, scheduler=scheduler, safety_checker=None,
                                               feature_extractor=None, requires_safety_checker=False)
    else:
        exported = T2IPipeline(unet=pipe.unet, scheduler=scheduler, text_encoder=encoder, tokenizer=tokenizer,
                               max_tokens=cfg.max_tokens, pixel_low=cfg.pixel_range[0], pixel_high=cfg.pixel_range[1],
                               clip_x0=x0_range(cfg) is not None)
    exported.save_pretrained(folder)
    if pipe.codec is None:  # the Hub's loader finds the class in the folder's own module (trust_remote_code=True)
        shutil.copy(Path(__file__).with_name("pipeline_t2i.py"), folder / "pipeline_t2i.py")
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = ["pipeline_t2i", "T2IPipeline"]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    tokenizer_config = folder / "tokenizer" / "tokenizer_config.json"  # the exporting machine's offline switch
    settings = json.loads(tokenizer_config.read_text())
    settings.pop("local_files_only", None)
    tokenizer_config.write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "t2i_config.json").write_text(cfg.to_json() + "\n")


def synthetic_data(cfg) -> bool:
    """Was the run trained on data t2i made up (the smoke profiles' shards or tiny VAE)?"""
    return bool((cfg.shards or "").startswith("synthetic/")) or cfg.vae == SYNTHETIC


def data_terms(cfg) -> tuple[str, str, str]:
    """The terms of the run's dataset (its spec's ``terms``), or a one-line error naming what to add."""
    spec = data.spec(cfg)
    if spec.terms is None or spec.card_id is None:
        raise UserError(f"cannot export a model of dataset {cfg.dataset!r}: t2i/data/{cfg.dataset}.py's DATASET does "
                        "not say its terms and card id (`terms`, `card_id`; docs/development.md), which the card and "
                        "LICENSE.md state")
    return spec.terms


def license_text(cfg) -> str:
    """LICENSE.md: the data's terms, which the weights, derived from the data, carry."""
    _, terms, source = data_terms(cfg)
    if synthetic_data(cfg):
        return ("# License\n\nThese weights were trained on synthetic data that t2i's tests write; they model nothing "
                "real and are for testing t2i only.\n")
    return (f"# License\n\nThese weights were trained on {cfg.dataset}. {terms} ({source}). Use the weights under the "
            "same terms: they are derived from that data.\n")


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
    results = [EvalResult(task_type="text-to-image", dataset_type=dataset, dataset_name=dataset, metric_type=metric,
                          metric_name=f"{name} at w={row['guidance_scale']} (N={row['samples']})",
                          metric_value=float(row[metric]))
               for row in rows if row["guidance_scale"] != "real"
               for metric, name in (("fid", f"FD in {features} features"), ("adherence", "adherence"))]
    license_fields = ({"license": spdx} if spdx != "other" and not synthetic else
                      {"license": "other",
                       "license_name": "synthetic-test-data" if synthetic else f"{cfg.dataset}-terms",
                       "license_link": "LICENSE.md"})
    metadata = ModelCardData(library_name="diffusers", pipeline_tag="text-to-image", **license_fields,
                             datasets=None if synthetic else [dataset],
                             tags=["text-to-image", "diffusers", "classifier-free-guidance", "t2i"],
                             model_name=f"t2i-{cfg.experiment}-{run.name}", eval_results=results or None)
    state = checkpoints.load_state(pipe.checkpoint)
    weights_text = {"ema": f"EMA, decay {cfg.ema_decay:g}", "raw": "the trained weights"}.get(pipe.weights,
                                                                                             pipe.weights)
    images_seen = state["step"] * cfg.batch_size * state.get("num_processes", 1) * cfg.gradient_accumulation_steps
    train_size = f"{cfg.train_subset:,} images (train_subset)" if cfg.train_subset else "the whole training split"
    text_encoder, vae = public_id(cfg.text_encoder), cfg.vae
    usage = (f'from diffusers import DDPMScheduler, StableDiffusionPipeline\n\npipe = StableDiffusionPipeline.'
             f'from_pretrained("{where}", safety_checker=None)\n'
             f'pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, steps_offset=0)'
             f'  # t2i\'s timesteps\n'
             if pipe.codec is not None else
             f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("{where}", '
             f'trust_remote_code=True)\n')
    usage += (f'image = pipe("{cfg.captions[0]}", guidance_scale={cfg.sample_guidance_scale:g}, '
              f"num_inference_steps={pipe.num_inference_steps}).images[0]\n")
    real = next((r for r in rows if r["guidance_scale"] == "real"), None)
    evaluation_text = (
        "Not evaluated: no `make eval` sweep was made from these weights (its provenance must carry this checkpoint's "
        "manifest hash). Run `make eval RUN=...` and export again." if not rows else
        f"From `make eval` on these weights (`{paths.portable(sweep)}`), N = {rows[0]['samples']} images per row. "
        f"**FD** is the Frechet distance in **{features}** features (comparable only within that feature space), "
        f"against N real training images; the real-vs-real floor at this N is {float(real['fid']):.2f}. "
        f"**Adherence**: {spec.adherence_meaning(cfg)}; the same judge scores {float(real['adherence']):.3f} on real "
        "held-out images.\n\n"
        + "\n".join(f"- w = {r['guidance_scale']}: FD {float(r['fid']):.2f}, adherence {float(r['adherence']):.3f}"
                    for r in rows if r["guidance_scale"] != "real"))
    differences = ("" if pipe.codec is None else
                   "\n\n**Differences from t2i's own sampler.** `StableDiffusionPipeline` forces `steps_offset = 1` "
                   "(every timestep one later than t2i's); the scheduler line above sets it back, after which its "
                   "images match t2i's at w = 1 and above. It guides only when `guidance_scale > 1`, where t2i's w in "
                   "[0, 1) moves towards the unconditional model.")
    data_line = ("synthetic shards written by t2i's tests (not a real dataset)" if synthetic else
                 f"[{dataset}]({source}) ({train_size})")
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
| training | {state['epoch']} epochs, {state['step']:,} optimizer steps, {images_seen:,} images seen, \
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
    if (not record or record.get("checkpoint_manifest_sha256") != checkpoints.manifest_sha256(pipe.checkpoint)
            or record.get("weights") != pipe.weights):
        return None, [], None
    with open(sweep) as f:
        return sweep, list(csv.DictReader(f)), record


def check_push(repo_id: str) -> None:
    """Before any export work, in one line each: a repository id the Hub accepts, not offline, a login, a reachable
    Hub that knows the login."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"--push-to-hub {repo_id!r} is not a Hub repository id (user/name): "
                        f"{' '.join(str(exc).split())[:160]}") from None
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set (compute nodes have no internet); export "
                        "here and push from a machine with internet, with HF_HUB_OFFLINE unset")
    token = get_token()
    if token is None:
        raise UserError(f"cannot push to {repo_id}: not logged in to the Hub; run `hf auth login` (or set HF_TOKEN)")
    try:
        HfApi().whoami(token=token)
    except Exception as exc:  # noqa: BLE001 - a refused login or no network: one line either way
        raise UserError(f"cannot push to {repo_id}: the Hub at {constants.ENDPOINT} did not accept the login "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); check the network and "
                        "`hf auth login`") from None


def push(folder: Path, repo_id: str, private: bool | None = None) -> str:
    """``create_repo(exist_ok=True)`` and ``upload_folder`` with a commit message, as diffusers' training scripts
    publish. ``private``: None leaves a new repository's visibility to the Hub's (or the organisation's) default; an
    existing repository keeps its own, and a difference is said."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    marker = json.loads((Path(folder) / MARKER).read_text())
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if private is not None:
            actual = api.repo_info(url.repo_id).private
            if actual != private:
                print(f"note: {url.repo_id} already exists and is {'private' if actual else 'public'}; its visibility "
                      "was left as it is (change it in the repository's settings)")
        return api.upload_folder(repo_id=url.repo_id, folder_path=str(folder),
                                 commit_message=f"t2i export of {marker['run']} ({marker['checkpoint']}, "
                                                f"{marker['weights']} weights)").commit_url
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"cannot push {folder} to {repo_id}: {' '.join(str(exc).split())[:200]} (log in with "
                        "`hf auth login` on a machine with internet, with HF_HUB_OFFLINE unset)") from exc

