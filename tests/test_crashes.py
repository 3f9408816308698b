"""Every interruption resumable, every bad input a one-line error (issue 12's defects, one test each, then a randomized
kill test and a table of bad command lines)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t2i import checkpoints, cli, configs, paths, runs
from t2i.data import synthetic
from t2i.errors import RunError

ROOT = Path(__file__).resolve().parents[1]
BAD_ROWS = {(0, 3): "garbage", (1, 5): "truncated_jpeg", (2, 1): "missing_label"}


def cli_args(run_name: str, sets: dict) -> list[str]:
    args = ["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", run_name]
    for key, value in sets.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "t2i", *args], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(args: list[str]) -> str:
    proc = start(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.fixture
def stream_settings(tmp_path, monkeypatch) -> dict:
    """A tiny training set streamed from 3 parquet shards with 3 unreadable rows (so bad_samples.csv has rows)."""
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    synthetic.write_class_shards(tmp_path / "data" / "killshards", num_shards=3, rows_per_shard=24, num_classes=4,
                                 row_group_size=8, odd_rows=BAD_ROWS)
    return {"shards": "killshards/train-*.parquet", "class_names": ["a", "b", "c", "d"], "channels": 3,
            "max_bad_fraction": 0.2, "epochs": 3, "checkpoint_every_steps": 1, "sample_every_steps": 5}


def run_files(run: Path) -> dict[str, bytes]:
    """What must be identical between an interrupted and an uninterrupted run: weights, logs and sample grids, byte for
    byte."""
    latest = checkpoints.latest(run)
    return {**{f"samples/{p.name}": p.read_bytes() for p in sorted((run / "samples").glob("*.png"))},"loss.csv": (run / runs.LOSS_LOG).read_bytes(), "bad_samples.csv": (run / runs.BAD_SAMPLES).read_bytes(),
            "unet": (latest / "unet" / "diffusion_pytorch_model.safetensors").read_bytes(),
            "ema": (latest / "ema" / "diffusion_pytorch_model.safetensors").read_bytes(), "checkpoint": latest.name}


def latest_step(run: Path) -> int:
    """The step of the checkpoint ``latest`` names, -1 while there is none (or it is being replaced)."""
    try:
        pointer = (checkpoints.checkpoint_dir(run) / checkpoints.LATEST).read_text().strip()
        return checkpoints.load_state(checkpoints.checkpoint_dir(run) / pointer)["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_random_kills_then_reruns_end_with_the_weights_and_logs_of_an_uninterrupted_run(stream_settings):
    """SIGKILL at random moments: the first as soon as the loss log exists (before any checkpoint), the others a
    random 0-150 ms after a random checkpoint (one is written after every step, so kills land in checkpoint writes,
    log flushes and steps alike). After each kill the same command runs again, until one finishes."""
    finish(cli_args("straight", stream_settings))
    straight = paths.run_dir("mnist", "straight")
    expected = run_files(straight)
    assert [k for k in expected if k.startswith("samples/")] == ["samples/step-00000005.png", "samples/step-00000010.png",
                                                                  "samples/step-00000015.png"]
    total = checkpoints.load_state(checkpoints.latest(straight))["step"]
    assert expected["bad_samples.csv"].count(b"\n") == 1 + 3 * len(BAD_ROWS)  # header + 3 epochs x 3 rows

    rng = random.Random(12)
    run = paths.run_dir("mnist", "killed")
    args = cli_args("killed", stream_settings)
    kills = []
    for attempt in range(6):
        if latest_step(run) >= total - 2:
            break
        target = min(latest_step(run) + rng.randint(1, 3), total - 2) if attempt else None
        proc = start(args)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            ready = (run / runs.LOSS_LOG).exists() if target is None else latest_step(run) >= target
            if ready:
                time.sleep(rng.uniform(0.0, 0.15))
                break
            time.sleep(0.005)
        if proc.poll() is not None:  # it finished first
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(latest_step(run))
    assert len(kills) >= 4, f"only {len(kills)} kills landed before the run finished"
    assert min(kills) < total and kills[0] <= 1, kills
    finish(args)
    assert run_files(run) == expected, f"kills after steps {kills}"


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


def test_a_bad_setting_fails_before_anything_is_written_so_the_corrected_command_runs(capsys, smoke_cfg):
    base = ["--set", f"text_encoder={smoke_cfg.text_encoder}", "--set", "cross_attention_dim=32", "--set", "epochs=1"]
    train = ["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", "typo", *base]
    assert cli.main([*train, "--set", "seed=-1"]) == 1
    assert not paths.run_dir("mnist", "typo").exists()
    assert cli.main(train) == 0


# (arguments, exit status, a phrase of the one-line message)
BAD_COMMAND_LINES = [
    (["train", "--set", "seed=-1"], 1, "seed=-1 must be in [0, 2**32)"),
    (["train", "--set", "learning_rate=-1"], 1, "learning_rate=-1.0 must be a positive number"),
    (["train", "--set", "learning_rate=NaN"], 1, "learning_rate=nan must be a positive number"),
    (["train", "--set", "norm_num_groups=0"], 1, "norm_num_groups=0 must be positive"),
    (["train", "--set", "epochs=two"], 1, "config key 'epochs' expects int"),
    (["train", "--set", "epoch=2"], 1, "unknown config keys ['epoch']"),
    (["train", "--set", "profile_steps=2"], 1, "profile_steps is now timing_steps"),
    (["train", "--set", "compile=fast"], 1, "compile='fast' is not one of ('off', 'full', 'regional')"),
    (["train", "--set", "num_inference_steps=2000"], 1, "must be <= num_train_timesteps"),
    (["train", "--set", "epochs"], 1, "--set expects key=value"),
    (["train", "--experiment", "mnist", "--profile", "full"], 1, "not available offline"),
    (["sample", "RUN", "--prompt", "x", "--guidance-scale", "nan", "--out", "g.png"], 2, "not a finite number"),
    (["sample", "RUN", "--prompt", "x", "--num-inference-steps", "0", "--out", "g.png"], 2, "must be at least 1"),
    (["sample", "RUN", "--prompt", "x", "--num-inference-steps", "-5", "--out", "g.png"], 2, "is negative"),
    (["sample", "RUN", "--prompt", "x", "--samples-per-prompt", "0", "--out", "g.png"], 2, "must be at least 1"),
    (["sample", "RUN", "--prompt", "x", "--out", "OUTDIR"], 2, "is a directory"),
    (["sample", "RUN", "--prompt", "x", "--out", "grid.jpg"], 2, "must end in .png"),
    (["sample", "NORUN", "--prompt", "x", "--out", "g.png"], 1, "is not a run folder"),
    (["sample", "RUN", "--prompt", "x", "--num-inference-steps", "5000", "--out", "g.png"], 1, "more than the run's"),
    (["sample", "RUN", "--prompt", "x", "--checkpoint", "epoch-0099", "--out", "g.png"], 1, "no checkpoint 'epoch-0099'"),
]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """A finished smoke run to sample from (module-wide: the table's sample rows share it)."""
    runs_dir = tmp_path_factory.mktemp("cli-runs")
    env = {**os.environ, "T2I_RUNS_DIR": str(runs_dir)}
    done = subprocess.run([sys.executable, "-m", "t2i", "train", "--experiment", "mnist", "--profile", "smoke",
                           "--run-name", "ok", "--set", "epochs=1", "--set", "train_subset=16"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return runs_dir / "mnist" / "ok"


@pytest.mark.parametrize("args, status, phrase", BAD_COMMAND_LINES, ids=[" ".join(a[:3]) + " " + a[-1] if len(a) > 3
                                                                         else " ".join(a) for a, _, _ in BAD_COMMAND_LINES])
def test_a_bad_command_line_is_one_line_on_stderr_and_a_nonzero_exit(args, status, phrase, capsys, tmp_path,
                                                                       sample_run, monkeypatch):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "empty-data"))  # the full profile's assets are missing here
    (tmp_path / "OUTDIR").mkdir()
    args = [{"RUN": str(sample_run), "NORUN": str(tmp_path / "nothing"), "OUTDIR": str(tmp_path / "OUTDIR"),
             "g.png": str(tmp_path / "g.png"), "grid.jpg": str(tmp_path / "grid.jpg")}.get(a, a) for a in args]
    if args[0] == "train" and "--profile" not in args:
        args += ["--experiment", "mnist", "--profile", "smoke", "--run-name", "bad"]
    if status == 2:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        code = exit_info.value.code
    else:
        code = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == status
    assert phrase in err[-1], err
    assert not any(line.startswith("Traceback") for line in err)
    assert not paths.run_dir("mnist", "bad").exists()


def test_the_missing_asset_message_lists_everything_missing_and_the_make_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    from t2i import assets

    with pytest.raises(FileNotFoundError) as info:
        assets.require(configs.get("celeba", "full"), text=True, dataset=True, vae=True)
    message = str(info.value)
    for missing in ("openai/clip-vit-base-patch32", "celeba/img_align+identity+attr/train-*.parquet",
                    "celeba/img_align+identity+attr/valid-*.parquet", "stabilityai/sd-vae-ft-mse",
                    "make assets EXPERIMENTS=celeba"):
        assert missing in message
    assert "\n" not in message


def test_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    with pytest.raises(configs.ConfigError):
        cli.main(["--debug", "train", "--experiment", "mnist", "--profile", "smoke", "--set", "seed=-1"])
    monkeypatch.setenv("T2I_DEBUG", "1")
    with pytest.raises(configs.ConfigError):
        cli.main(["train", "--experiment", "mnist", "--profile", "smoke", "--set", "seed=-1"])


def test_sample_provenance_records_the_sampler_and_steps_it_used(sample_run, tmp_path):
    out = tmp_path / "ddim.png"
    assert cli.main(["sample", str(sample_run), "--prompt", "A handwritten digit 3", "--sampler", "ddim",
                     "--num-inference-steps", "2", "--samples-per-prompt", "2", "--out", str(out)]) == 0
    provenance = json.loads(out.with_name("ddim.provenance.json").read_text())
    assert (provenance["sampler"], provenance["num_inference_steps"], provenance["samples"]) == ("ddim", 2, 2)
