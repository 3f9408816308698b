"""Killing a run (workflow): a randomized kill test, kills at the worst moments, damaged checkpoints and logs; every
rerun ends with the weights and logs of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from t2i import checkpoints, paths, runs, watch
from t2i.data import synthetic
from t2i.errors import RunError
from tests.helpers import ROOT, tensorboard_events

BAD_ROWS = {(0, 3): "garbage", (1, 5): "truncated_jpeg", (2, 1): "missing_label"}


def cli_args(run_name: str, sets: dict) -> list[str]:
    args = ["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", run_name]
    for key, value in sets.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "t2i", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def collect_output(proc: subprocess.Popen) -> list[str]:
    """The lines ``proc`` prints, collected as they come by a thread."""
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def finish(args: list[str]) -> str:
    proc = start(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.fixture
def stream_settings(tmp_path, monkeypatch) -> dict:
    """A tiny training set streamed from 3 parquet shards with 3 unreadable rows (so bad_samples.csv has rows)."""
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    synthetic.write_class_shards(
        tmp_path / "data" / "killshards",
        num_shards=3,
        rows_per_shard=24,
        num_classes=4,
        row_group_size=8,
        odd_rows=BAD_ROWS,
    )
    return {
        "shards": "killshards/train-*.parquet",
        "class_names": ["a", "b", "c", "d"],
        "channels": 3,
        "max_bad_fraction": 0.2,
        "epochs": 3,
        "checkpoint_every_steps": 1,
        "sample_every_steps": 5,
    }


WATCHED = {
    "report_to": "tensorboard",
    "eval_every_epochs": 1,
    "eval_guidance_scales": [1.0, 3.0],
    "eval_samples_per_prompt": 2,
}


def run_files(run: Path) -> dict[str, bytes]:
    """What must be identical between an interrupted and an uninterrupted run: weights, logs and sample grids, byte for
    byte."""
    latest = checkpoints.latest(run)
    return {
        **{f"samples/{p.name}": p.read_bytes() for p in sorted((run / "samples").glob("*.png"))},
        "loss.csv": (run / runs.LOSS_LOG).read_bytes(),
        "bad_samples.csv": (run / runs.BAD_SAMPLES).read_bytes(),
        "eval.csv": (run / runs.EVAL_LOG).read_bytes(),
        "events": tensorboard_events(run),
        "unet": (latest / "unet" / "diffusion_pytorch_model.safetensors").read_bytes(),
        "ema": (latest / "ema" / "diffusion_pytorch_model.safetensors").read_bytes(),
        "checkpoint": latest.name,
    }


def latest_step(run: Path) -> int:
    """The step of the checkpoint ``latest`` names, -1 while there is none (or it is being replaced)."""
    try:
        pointer = (checkpoints.checkpoint_dir(run) / checkpoints.LATEST).read_text().strip()
        return checkpoints.load_state(checkpoints.checkpoint_dir(run) / pointer)["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_random_kills_then_reruns_end_with_the_weights_and_logs_of_an_uninterrupted_run(stream_settings):
    """SIGKILL at random moments of a run that draws grids, evaluates every epoch and reports to TensorBoard: the
    first kill as soon as the loss log exists (before any checkpoint); then, in turn, a random 0-150 ms after a random
    checkpoint (one is written after every step, so kills land in checkpoint writes, log flushes, steps and grids) and
    a random 0-300 ms into an epoch-end evaluation (it starts once the epoch's bad rows are printed). After each kill
    the same command runs again, until one finishes: weights, logs, grids, evaluations and TensorBoard's events
    (tags, steps, values, images) end as the uninterrupted run's."""
    settings = {**stream_settings, **WATCHED}
    finish(cli_args("straight", settings))
    straight = paths.run_dir("mnist", "straight")
    expected = run_files(straight)
    assert [k for k in expected if k.startswith("samples/")] == [
        "samples/step-00000005.png",
        "samples/step-00000010.png",
        "samples/step-00000015.png",
    ]
    total = checkpoints.load_state(checkpoints.latest(straight))["step"]
    assert expected["bad_samples.csv"].count(b"\n") == 1 + 3 * len(BAD_ROWS)  # header + 3 epochs x 3 rows
    assert expected["eval.csv"].count(b"\n") == 1 + 3 * 3  # header + 3 epochs x (real, w=1, w=3)
    assert {"loss", "loss_smoothed", "lr", "eval/adherence_w3", "samples"} <= set(expected["events"])
    assert [step for step, _ in expected["events"]["loss"]] == list(range(1, total + 1))

    rng = random.Random(12)
    run = paths.run_dir("mnist", "killed")
    args = cli_args("killed", settings)
    kills, in_eval = [], 0
    for attempt in range(7):
        if latest_step(run) >= total - 2:
            break
        moment = "log" if attempt == 0 else ("eval" if attempt % 2 == 0 else "checkpoint")
        target = min(latest_step(run) + rng.randint(1, 3), total - 2)
        proc, ended = start(args), []
        lines = collect_output(proc)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if moment == "log" and (run / runs.LOSS_LOG).exists():
                break
            if moment == "checkpoint" and latest_step(run) >= target:
                time.sleep(rng.uniform(0.0, 0.15))
                break
            ended = [int(m.group(1)) for m in map(re.compile(r"epoch (\d+): \d+ bad rows").search, list(lines)) if m]
            if moment == "eval" and ended:
                time.sleep(rng.uniform(0.0, 0.3))
                break
            time.sleep(0.005)
        if proc.poll() is not None:  # it finished first
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((moment, latest_step(run)))
        if moment == "eval":
            evaluated = {int(r["epoch"]) for r in watch.read_eval_log(run)} if (run / runs.EVAL_LOG).exists() else set()
            in_eval += bool(ended) and ended[-1] not in evaluated  # killed before that epoch's evaluation was written
    assert len(kills) >= 5, f"only {len(kills)} kills landed before the run finished: {kills}"
    assert kills[0][1] <= 1 and in_eval >= 1, kills
    finish(args)
    assert run_files(run) == expected, f"kills (moment, latest checkpoint's step): {kills}"
    assert len(list((run / "tracking").glob("*/hparams.yml"))) == 1  # the hyper-parameters, recorded once


def test_a_kill_right_after_the_log_is_created_leaves_a_run_that_resumes(smoke_cfg, fit):
    """The state an early kill used to leave: config.json, an empty loss.csv (its header was still in a buffer)."""
    run = paths.run_dir("mnist", "early")
    cfg = smoke_cfg.replace(epochs=1)
    run.mkdir(parents=True)
    (run / runs.CONFIG).write_text(cfg.to_json())
    (run / runs.LOSS_LOG).write_text("")
    fit(cfg, run)
    assert (run / runs.LOSS_LOG).read_text().splitlines()[0] == "epoch,step,loss"
    assert runs.read_loss_log(run)["step"].tolist() == [1, 2, 3, 4]


def test_logs_keep_whole_rows_only_and_unix_line_endings_across_resumes(smoke_cfg, fit):
    run = paths.run_dir("mnist", "rows")
    fit(smoke_cfg.replace(epochs=1), run)
    with open(run / runs.LOSS_LOG, "a") as f:  # a kill mid-write: a cut row (its step reads 1), then a stray one
        f.write("2,5,0.4\n2,1")
    fit(smoke_cfg.replace(epochs=2), run)
    text = (run / runs.LOSS_LOG).read_bytes()
    assert b"\r" not in text
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))
    fit(smoke_cfg.replace(epochs=2), run)  # a finished run resumed again: the log is not rewritten
    assert (run / runs.LOSS_LOG).read_bytes() == text


@pytest.mark.parametrize("damaged", ["state.json", "manifest.json"])
def test_truncated_json_in_the_newest_checkpoint_falls_back_with_a_warning(smoke_cfg, fit, damaged):
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "json"))
    path = checkpoints.checkpoint_dir(run) / "epoch-0002" / damaged
    path.write_text(path.read_text()[:40])
    with pytest.warns(UserWarning, match="epoch-0002"):
        assert checkpoints.latest(run).name == "epoch-0001"
    assert [p.name for p in checkpoints.candidates(run)][-1] == "epoch-0002"  # unverified: ordered last
    with pytest.warns(UserWarning, match="epoch-0002"):
        fit(smoke_cfg.replace(epochs=2), run)  # resumes from epoch 1, rewrites epoch 2
    assert checkpoints.latest(run).name == "epoch-0002"


def test_a_run_whose_checkpoints_are_all_damaged_stops_until_restarted_on_purpose(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "broken"))
    for ckpt in checkpoints.candidates(run):
        (ckpt / "manifest.json").write_text("{")
    with pytest.warns(UserWarning), pytest.raises(RunError, match="--restart"):
        fit(smoke_cfg.replace(epochs=2), run)
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))  # nothing appended
    watched = ["eval.csv", "samples/step-00000008.png", "tracking/events.out"]  # what t2i.watch / tracking write
    for name in watched:
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_text("the old run's")
    fit(smoke_cfg.replace(epochs=2), run, restart=True)  # the damaged checkpoints are set aside first
    assert checkpoints.latest(run).name == "epoch-0002"
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))
    aside = list(run.glob("restarted-*"))
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "epoch-0002").is_dir()  # set aside, not deleted
    for name in watched:  # the new run's grids, evaluations and curves start clean
        assert (aside[0] / name).read_text() == "the old run's" and not (run / name).exists()
