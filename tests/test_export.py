"""t2i.export: a trained run as a diffusers pipeline folder that samples what t2i samples, loads the Hub's way
without t2i, never deletes what it did not write, and carries a card that describes the exported weights."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from t2i import cli, configs, evaluate, experiment, judges, paths
from t2i.errors import UserError
from t2i.export import MARKER, check_push, export

WITHOUT_T2I = """
import sys
class NoT2I:  # this process can import diffusers and transformers, never t2i
    @staticmethod
    def find_spec(name, *args, **kwargs):
        if name == "t2i" or name.startswith("t2i."):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoT2I)
import numpy as np, torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
seed, steps, out = int(sys.argv[2]), int(sys.argv[3]), {}
for w in (0.0, 1.0, 3.0):
    generators = [torch.Generator().manual_seed(seed + i) for i in range(2)]
    out[str(w)] = pipe(["A handwritten digit 3", "A handwritten digit 7"], guidance_scale=w, num_inference_steps=steps,
                       generator=generators, output_type="pt").images.numpy()
np.savez(sys.argv[4], **out)
"""


def generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


@pytest.fixture
def pixel_run(smoke_cfg, fit):
    return experiment.Run.open(fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "shared")))


def test_a_pixel_run_loads_the_hubs_way_without_t2i_and_samples_what_t2i_samples(pixel_run, tmp_path):
    pipe = pixel_run.pipe
    out = export(pixel_run, tmp_path / "exported")
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_t2i", "T2IPipeline"]
    assert "local_files_only" not in (out / "tokenizer" / "tokenizer_config.json").read_text()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_T2I,
            str(out),
            str(pipe.cfg.seed),
            str(pipe.num_inference_steps),
            str(tmp_path / "plain.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = np.load(tmp_path / "plain.npz")
    prompts = ["A handwritten digit 3", "A handwritten digit 7"]
    for w in (0.0, 1.0, 3.0):
        np.testing.assert_array_equal(plain[str(w)], pipe.images(prompts, w).numpy())  # pixel-identical
    loaded = DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    twice = loaded(
        prompts,
        guidance_scale=3.0,
        num_inference_steps=pipe.num_inference_steps,
        num_images_per_prompt=2,
        generator=generators(pipe.cfg.seed, 4),
        output_type="pt",
    ).images
    torch.testing.assert_close(twice, pipe.images([p for p in prompts for _ in range(2)], 3.0), atol=0, rtol=0)
    negative = loaded(
        prompts[:1],
        guidance_scale=3.0,
        num_inference_steps=pipe.num_inference_steps,
        negative_prompt="A handwritten digit 7",
        generator=generators(0, 1),
        output_type="pt",
    ).images
    assert negative.shape == (1, 1, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers 0.42 prefers dtype= to torch_dtype=
        bf16 = DiffusionPipeline.from_pretrained(out, trust_remote_code=True, torch_dtype=torch.bfloat16)
    assert bf16.unet.dtype == torch.bfloat16
    low = bf16(
        prompts,
        guidance_scale=3.0,
        num_inference_steps=pipe.num_inference_steps,
        generator=generators(pipe.cfg.seed, 2),
        output_type="pt",
    ).images
    assert torch.isfinite(low).all() and (low - pipe.images(prompts, 3.0)).abs().mean() < 0.05
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and str(tmp_path) not in card  # no absolute path of this machine
    snippet = card.split("```python\n")[1].split("```")[0]
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_card_quotes_only_an_evaluation_of_the_exported_weights(pixel_run, smoke_cfg, fit, tmp_path, monkeypatch):
    """A sweep is matched by the checkpoint manifest's hash: another model with the same run and checkpoint names (a
    second runs folder, the same report folder) gets "Not evaluated", never the first one's numbers."""
    pipe = pixel_run.pipe
    judge = judges.for_config(pipe.cfg.replace(judge_epochs=1))
    extractor = evaluate.make_extractor("judge", judge)
    evaluate.write_sweep_report(
        evaluate.sweep(pipe, judge, extractor, [3.0], 2), pipe, extractor, paths.eval_dir(pixel_run.dir)
    )
    card = (export(pixel_run, tmp_path / "evaluated") / "README.md").read_text()
    assert "adherence at w=3.0 (N=20)" in card and "judge-penultimate" in card and "chance 10%" in card
    assert "license: cc-by-4.0" in card and "base_model" not in card and "## Intended use and limitations" in card
    monkeypatch.setenv("T2I_RUNS_DIR", str(tmp_path / "other-runs"))
    other = fit(smoke_cfg.replace(epochs=1, seed=7), paths.run_dir("mnist", "shared"))  # same names, other weights
    card = (export(experiment.Run.open(other), tmp_path / "other") / "README.md").read_text()
    assert "Not evaluated" in card and "adherence at w=" not in card


def test_export_never_deletes_what_it_did_not_write(pixel_run, tmp_path, monkeypatch):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "thesis.tex").write_text("precious")
    for out, why in (
        (keep, "not empty and not an earlier export"),
        (pixel_run.dir, "holds the run"),
        (paths.runs_dir(), "holds the runs folder"),
        (paths.ROOT, "holds the repository"),
        (keep / "thesis.tex", "is a file"),
    ):
        with pytest.raises(UserError, match=why):
            export(pixel_run, out, overwrite=True)
    assert (keep / "thesis.tex").read_text() == "precious" and (pixel_run.dir / "config.json").exists()
    first = export(pixel_run, tmp_path / "exported")
    with pytest.raises(UserError, match="--overwrite"):
        export(pixel_run, first)

    import t2i.export as exporting

    def full_disk(pipe, folder):
        (folder / "half-written").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exporting, "write_pipeline", full_disk)
    with pytest.raises(UserError, match=f"no space left on the device while exporting to {first}"):
        export(pixel_run, first, overwrite=True)
    assert (first / MARKER).exists() and (first / "model_index.json").exists()  # the earlier export is whole
    assert leftovers(tmp_path) == []  # nothing half left


def leftovers(folder):
    """What exports left beside their OUT folders, but the lock files they keep (t2i.export.exclusive)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".export.lock"))


def test_overwrite_replaces_only_what_the_earlier_export_wrote(pixel_run, tmp_path):
    first = export(pixel_run, tmp_path / "exported")
    listed = json.loads((first / MARKER).read_text())["files"]
    assert {"model_index.json", "README.md", MARKER, "unet/config.json"} <= set(listed)
    assert set(listed) == {str(p.relative_to(first)) for p in first.rglob("*") if p.is_file()}
    (first / "unet" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"1 file\(s\) the earlier export did not write \(unet/notes.txt\)"):
        export(pixel_run, first, overwrite=True)
    assert (first / "unet" / "notes.txt").read_text() == "mine"
    (first / "unet" / "notes.txt").unlink()
    export(pixel_run, first, overwrite=True)


def test_out_is_taken_literally_and_checked_before_any_work(pixel_run, tmp_path, monkeypatch):
    import t2i.export as exporting

    monkeypatch.setattr(exporting.Run, "pipeline", lambda *a, **k: pytest.fail("the pipeline loaded before a refusal"))
    monkeypatch.chdir(tmp_path)
    for out, why in (
        (".", "a folder name for OUT, not '.'"),
        ("", "a folder name for OUT, not '.'"),
        ("..", "not '..'"),
    ):
        with pytest.raises(UserError, match=why):
            export(pixel_run, Path(out))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UserError, match="is a symbolic link"):
        export(pixel_run, tmp_path / "link")
    assert (tmp_path / "link").is_symlink()


def test_a_missing_parent_folder_is_created(pixel_run, tmp_path):
    out = export(pixel_run, tmp_path / "new" / "deeper" / "exported")
    assert (out / MARKER).is_file()


def test_a_second_export_to_the_same_folder_while_one_runs_is_refused_in_one_line(pixel_run, tmp_path):
    import t2i.export as exporting

    out = tmp_path / "exported"
    with exporting.exclusive(out):  # what a running export holds (an flock: a second open file conflicts)
        with pytest.raises(UserError, match="another export to .* is running"):
            export(pixel_run, out)
    assert not out.exists()
    export(pixel_run, out)  # the lock is free again once its holder is done


@pytest.mark.parametrize("killed_after", ["writing", "moving the earlier export aside", "moving the new one in"])
def test_a_kill_at_every_step_of_the_swap_leaves_a_whole_export_and_no_temporary_folder(
    pixel_run, tmp_path, killed_after
):
    """What a kill leaves at each step of swap_in, rebuilt by hand; the next export recovers from it."""
    out = export(pixel_run, tmp_path / "exported")
    whole = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    new = tmp_path / ".exported.export-deadbeef"
    shutil.copytree(out, new)
    if killed_after != "writing":
        out.rename(tmp_path / ".exported.replaced-deadbeef")
    if killed_after == "moving the new one in":
        new.rename(out)
    export(pixel_run, out, overwrite=True)
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == whole
    assert leftovers(tmp_path) == []


def test_a_kill_mid_export_leaves_the_earlier_export_whole_and_the_next_export_tidies_up(pixel_run, tmp_path):
    import os
    import signal
    import time

    first = export(pixel_run, tmp_path / "exported")
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    job = subprocess.Popen(
        [sys.executable, "-m", "t2i", "export", str(pixel_run.dir), str(first), "--overwrite"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".exported.export-*/unet")):  # killed while it writes the new folder
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    export(pixel_run, first, overwrite=True)
    assert leftovers(tmp_path) == []  # the killed export's half folder is gone


def test_a_latent_run_loads_in_the_stock_pipeline_and_the_cards_line_makes_it_t2is_sampler(tmp_path):
    cfg = configs.get("celeba", "smoke")
    run = experiment.Run.open(experiment.train(cfg, paths.run_dir("celeba", "export")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the known steps_offset warning is not printed
        out = export(run, tmp_path / "celeba")
    card = (out / "README.md").read_text()
    assert "Not evaluated" in card and "steps_offset=0" in card and "synthetic" in card and "datasets:" not in card
    sd = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    assert sd.tokenizer.model_max_length == cfg.max_tokens and sd.text_encoder.config.use_attention_mask
    assert sd.vae.config.scaling_factor == pytest.approx(0.18215)
    exec(card.split("```python\n")[1].split("pipe = ")[0])  # the card's imports
    sd.scheduler = type(sd.scheduler).from_config(sd.scheduler.config, steps_offset=0)  # the card's line
    for w in (1.0, 3.0):
        stock = sd(
            cfg.captions[0],
            guidance_scale=w,
            num_inference_steps=run.pipe.num_inference_steps,
            generator=generators(cfg.seed, 1),
            output_type="pt",
        ).images
        torch.testing.assert_close(stock, run.pipe.images([cfg.captions[0]], w), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "repo, env, phrase",
    [
        ("not a repo!", {}, "is not a Hub repository id"),
        ("someone/t2i-mnist", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ("someone/t2i-mnist", {"HF_HUB_OFFLINE": "0"}, "not logged in"),
        ("someone/t2i-mnist", {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_fake"}, "did not accept the login"),
    ],
)
def test_a_push_that_cannot_happen_is_one_line_before_any_export_work(
    pixel_run, tmp_path, monkeypatch, capsys, repo, env, phrase
):
    """No Hub is ever contacted: offline mode, no token, or a token sent to a closed local port."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", env.get("HF_HUB_OFFLINE") == "1")
    code = cli.main(["export", str(pixel_run.dir), str(tmp_path / "out"), "--push-to-hub", repo])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and phrase in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()  # refused before the export
    with pytest.raises(UserError, match=phrase):
        check_push(repo)


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (paths.ROOT / "t2i" / "data").glob("*.py") if "DATASET = " in p.read_text())
)
def test_every_dataset_says_its_terms_and_card_id_so_it_can_be_exported(name):
    from t2i import data

    spec = data.spec(name)
    assert spec.card_id and spec.terms is not None, f"t2i/data/{name}.py: set card_id and terms"
    spdx, words, source = spec.terms
    assert spdx and words and source.startswith("https://")


def test_a_dataset_without_terms_is_refused_in_one_line(monkeypatch, smoke_cfg):
    from t2i import data
    from t2i.export import model_card

    monkeypatch.setattr(type(data.spec(smoke_cfg)), "terms", None)
    with pytest.raises(UserError, match="does not say its terms"):
        model_card.data_terms(smoke_cfg)
