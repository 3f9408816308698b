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

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

from diffusers import StableDiffusionPipeline

from .. import checkpoints, paths, reports
from ..errors import UserError
from ..experiment import Run
from ..pipeline import TextToImage
from ..sampling import make_scheduler, x0_range
from .folder import MARKER, check_out, check_target, exclusive, full_disk, recover, swap_in
from .model_card import card, license_text
from .pipeline_t2i import T2IPipeline

__all__ = ["T2IPipeline", "check_out", "check_push", "export", "push"]


def export(
    run: Run,
    out: Path,
    checkpoint: str | None = None,
    weights: str | None = None,
    *,
    overwrite: bool = False,
    repo_id: str | None = None,
    ema_length: float | None = None,
) -> Path:
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
        pipe = run.pipeline(
            checkpoint=checkpoint,
            ema=None if weights is None else weights == "ema",
            device="cpu",
            ema_length=ema_length,
        )
        tmp = out.with_name(f".{out.name}.export-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
            marker = {
                "run": paths.portable(run.dir),
                "checkpoint": pipe.checkpoint.name,
                "manifest_sha256": checkpoints.manifest_sha256(pipe.checkpoint),
                "weights": pipe.weights,
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")  # first: recovery knows the folder by it
            write_pipeline(pipe, tmp)
            grid = tmp / "samples.png"
            prompts = [p for p in pipe.cfg.captions[:4] for _ in range(4)]
            reports.image_grid(
                pipe.images(prompts, pipe.cfg.sample_guidance_scale, show_progress=False),
                grid,
                nrow=4,
                title=f"w = {pipe.cfg.sample_guidance_scale:g}",
                row_labels=pipe.cfg.captions[:4],
            )
            (tmp / "LICENSE.md").write_text(license_text(pipe.cfg))
            card(pipe, run, repo_id or f"./{out.name}").save(tmp / "README.md")
            marker["files"] = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()) + [MARKER]
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")  # last: what --overwrite may replace
            swap_in(tmp, out)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # only what this export wrote; OUT is as it was
            if full_disk(exc):
                raise UserError(
                    f"no space left on the device while exporting to {out} (writing {tmp}); the previous "
                    "export, if any, is untouched: free space and export again"
                ) from exc
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
            exported = StableDiffusionPipeline(
                vae=pipe.codec.vae,
                text_encoder=encoder,
                tokenizer=tokenizer,
                unet=pipe.unet,
                scheduler=scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    else:
        exported = T2IPipeline(
            unet=pipe.unet,
            scheduler=scheduler,
            text_encoder=encoder,
            tokenizer=tokenizer,
            max_tokens=cfg.max_tokens,
            pixel_low=cfg.pixel_range[0],
            pixel_high=cfg.pixel_range[1],
            clip_x0=x0_range(cfg) is not None,
        )
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


def check_push(repo_id: str) -> None:
    """Before any export work, in one line each: a repository id the Hub accepts, not offline, a login, a reachable
    Hub that knows the login."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(
            f"--push-to-hub {repo_id!r} is not a Hub repository id (user/name): {' '.join(str(exc).split())[:160]}"
        ) from None
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE is set (compute nodes have no internet); export "
            "here and push from a machine with internet, with HF_HUB_OFFLINE unset"
        )
    token = get_token()
    if token is None:
        raise UserError(f"cannot push to {repo_id}: not logged in to the Hub; run `hf auth login` (or set HF_TOKEN)")
    try:
        HfApi().whoami(token=token)
    except Exception as exc:  # noqa: BLE001 - a refused login or no network: one line either way
        raise UserError(
            f"cannot push to {repo_id}: the Hub at {constants.ENDPOINT} did not accept the login "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); check the network and "
            "`hf auth login`"
        ) from None


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
                print(
                    f"note: {url.repo_id} already exists and is {'private' if actual else 'public'}; its visibility "
                    "was left as it is (change it in the repository's settings)"
                )
        return api.upload_folder(
            repo_id=url.repo_id,
            folder_path=str(folder),
            commit_message=f"t2i export of {marker['run']} ({marker['checkpoint']}, {marker['weights']} weights)",
        ).commit_url
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(
            f"cannot push {folder} to {repo_id}: {' '.join(str(exc).split())[:200]} (log in with "
            "`hf auth login` on a machine with internet, with HF_HUB_OFFLINE unset)"
        ) from exc
