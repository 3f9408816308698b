"""t2i.export: a trained run as a diffusers pipeline folder, with a model card, that samples what t2i samples."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from t2i import configs, evaluate, experiment, judges, paths
from t2i.export import T2IPipeline, export
from t2i.pipeline import TextToImage


def generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


def test_a_pixel_run_exports_a_pipeline_that_samples_what_t2i_samples_in_t2i_and_in_plain_diffusers(smoke_cfg, fit,
                                                                                                  tmp_path):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "shared"))
    pipe = TextToImage.from_run(run)
    judge = judges.for_config(pipe.cfg.replace(judge_epochs=1))
    evaluate.write_sweep_report(evaluate.sweep(pipe, judge, evaluate.make_extractor("judge", judge), [3.0], 2), pipe,
                                evaluate.make_extractor("judge", judge), paths.eval_dir(run))
    out = export(experiment.Run.open(run), tmp_path / "exported")
    prompts, w = ["A handwritten digit 3", "A handwritten digit 7"], 3.0
    expected = pipe.images(prompts, w)
    ours = T2IPipeline.from_pretrained(out)(prompts, guidance_scale=w, num_inference_steps=pipe.num_inference_steps,
                                            generator=generators(pipe.cfg.seed, 2), output_type="pt").images
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    plain = DiffusionPipeline.from_pretrained(out, custom_pipeline=str(out / "pipeline_t2i.py"),
                                              trust_remote_code=True)
    again = plain(prompts, guidance_scale=w, num_inference_steps=pipe.num_inference_steps,
                  generator=generators(pipe.cfg.seed, 2), output_type="pt").images
    torch.testing.assert_close(again, expected, atol=1e-5, rtol=0)
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "pipeline_tag: text-to-image" in card
    assert "adherence at w=3.0 (N=20)" in card  # the sweep made from this checkpoint, as measured
    snippet = card.split("```python\n")[1].split("```")[0]
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_latent_run_loads_in_the_stock_stable_diffusion_pipeline(tmp_path):
    cfg = configs.get("celeba", "smoke")
    run = experiment.train(cfg, paths.run_dir("celeba", "export"))
    out = export(experiment.Run.open(run), tmp_path / "celeba")
    card = (out / "README.md").read_text()
    assert "No evaluation was made from this checkpoint" in card and "steps_offset = 1" in card
    sd = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    assert sd.tokenizer.model_max_length == cfg.max_tokens and sd.text_encoder.config.use_attention_mask
    assert sd.vae.config.scaling_factor == pytest.approx(0.18215)
    image = sd(cfg.captions[0], guidance_scale=3.0, num_inference_steps=3, output_type="np").images
    assert image.shape == (1, cfg.resolution, cfg.resolution, 3)


def test_pushing_without_a_network_is_one_line(smoke_cfg, fit, tmp_path, capsys, monkeypatch):
    from t2i.cli import main

    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "push"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["export", str(run), str(tmp_path / "out"), "--push-to-hub", "someone/t2i-mnist"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot push") and "Traceback" not in "\n".join(err)
