"""t2i.cli: every command, and every bad command line as a one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2i import checkpoints, cli, configs, paths
from tests.helpers import ROOT

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
    (["sample", "RUN", "--prompt", "x", "--out", "NODIR/g.png"], 1, "nodir does not exist"),
    (["sample", "RUN", "--prompt", "x", "--out", "/proc/g.png"], 1, "cannot write /proc/g.png"),
    (["sample", "RUN", "--prompt", "x", "--checkpoint", "../../ref", "--out", "g.png"], 1, "not a path"),
    (["figures", "--profile", "nope"], 1, "unknown profile 'nope'"),
    (["train", "--profile", "smoke", "--run-name", "../../escape"], 1, "must be a single folder name"),
    (["train", "--set", "eval_every_epochs=1", "--set", "eval_samples_per_prompt=100"], 1, "eval_every_epochs needs"),
    (["sample", "RUN", "--prompt", "x", "--out", "grid.jpg"], 2, "must end in .png"),
    (["sample", "NORUN", "--prompt", "x", "--out", "g.png"], 1, "is not a run folder"),
    (
        ["sample", "RUN", "--prompt", "x", "--num-inference-steps", "5000", "--out", "g.png"],
        1,
        "run's 1000 training timesteps",
    ),
    (
        ["sample", "RUN", "--prompt", "x", "--checkpoint", "epoch-0099", "--out", "g.png"],
        1,
        "no checkpoint 'epoch-0099'",
    ),
    (
        ["sample", "RUN", "--prompt", "x", "--guidance-method", "apg", "--guidance-param", "eta=abc", "--out", "g.png"],
        1,
        "--guidance-param eta=abc: the value must be a finite number",
    ),
    (
        ["sample", "RUN", "--prompt", "x", "--no-ema", "--ema-length", "0.05", "--out", "g.png"],
        1,
        "--no-ema and --ema-length ask for different weights",
    ),
    (["export", "RUN", "OUTDIR/x", "--push-to-hub", ""], 1, "--push-to-hub needs a repository id"),
    (["export", "RUN", "OUTDIR/x", "--weights", "raw", "--ema-length", "0.05"], 1, "--weights raw and --ema-length"),
    (["export", "RUN", "OUTDIR/x", "--private"], 1, "add --push-to-hub REPO_ID"),
    (["export", "RUN", "."], 1, "export needs a folder name for OUT, not '.'"),
]


def test_train_then_sample_from_the_command_line(smoke_cfg, tmp_path):
    overrides = [
        "--set",
        f"text_encoder={smoke_cfg.text_encoder}",
        "--set",
        "cross_attention_dim=32",
        "--set",
        "epochs=1",
    ]
    assert cli.main(["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", "cli", *overrides]) == 0
    run = paths.run_dir("mnist", "cli")
    assert checkpoints.latest(run).name == "epoch-0001"
    out = tmp_path / "grid.png"
    assert (
        cli.main(
            [
                "sample",
                str(run),
                "--prompt",
                "A handwritten digit 3",
                "--prompt",
                "A handwritten digit 4",
                "--guidance-scale",
                "5",
                "--samples-per-prompt",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 1000
    assert out.with_name("grid.provenance.json").exists()


def test_a_bad_setting_fails_before_anything_is_written_so_the_corrected_command_runs(capsys, smoke_cfg):
    base = ["--set", f"text_encoder={smoke_cfg.text_encoder}", "--set", "cross_attention_dim=32", "--set", "epochs=1"]
    train = ["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", "typo", *base]
    assert cli.main([*train, "--set", "seed=-1"]) == 1
    assert not paths.run_dir("mnist", "typo").exists()
    assert cli.main(train) == 0


@pytest.mark.parametrize(
    "args, status, phrase",
    BAD_COMMAND_LINES,
    ids=[" ".join(a[:3]) + " " + a[-1] if len(a) > 3 else " ".join(a) for a, _, _ in BAD_COMMAND_LINES],
)
def test_a_bad_command_line_is_one_line_on_stderr_and_a_nonzero_exit(
    args, status, phrase, capsys, tmp_path, sample_run, monkeypatch
):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "empty-data"))  # the full profile's assets are missing here
    (tmp_path / "OUTDIR").mkdir()
    args = [
        {
            "RUN": str(sample_run),
            "NORUN": str(tmp_path / "nothing"),
            "OUTDIR": str(tmp_path / "OUTDIR"),
            "g.png": str(tmp_path / "g.png"),
            "grid.jpg": str(tmp_path / "grid.jpg"),
            "NODIR/g.png": str(tmp_path / "nodir" / "g.png"),
            "OUTDIR/x": str(tmp_path / "OUTDIR" / "x"),
        }.get(a, a)
        for a in args
    ]
    if args[0] == "train" and "--profile" not in args:
        args += ["--experiment", "mnist", "--profile", "smoke", "--run-name", "bad"]
    before = sorted(p.relative_to(sample_run) for p in sample_run.rglob("*"))
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
    if args[0] == "train":
        assert not paths.run_dir("mnist", "bad").exists()  # nothing written: the corrected command starts clean
        assert not (paths.runs_dir().parent / "escape").exists()
    elif args[0] == "figures":
        assert not (paths.reports_dir() / "nope").exists()
    else:  # no image written, and the run sampled from is as it was
        assert not (tmp_path / "g.png").exists() and not (tmp_path / "grid.jpg").exists()
        assert not any((tmp_path / "OUTDIR").iterdir())
        assert sorted(p.relative_to(sample_run) for p in sample_run.rglob("*")) == before


def test_the_missing_asset_message_lists_everything_missing_and_the_make_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    from t2i import assets

    with pytest.raises(FileNotFoundError) as info:
        assets.require(configs.get("celeba", "full"), text=True, dataset=True, vae=True)
    message = str(info.value)
    for missing in (
        "openai/clip-vit-base-patch32",
        "celeba/img_align+identity+attr/train-*.parquet",
        "celeba/img_align+identity+attr/valid-*.parquet",
        "stabilityai/sd-vae-ft-mse",
        "make assets EXPERIMENTS=celeba",
    ):
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
    assert (
        cli.main(
            [
                "sample",
                str(sample_run),
                "--prompt",
                "A handwritten digit 3",
                "--sampler",
                "ddim",
                "--num-inference-steps",
                "2",
                "--samples-per-prompt",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    provenance = json.loads(out.with_name("ddim.provenance.json").read_text())
    assert (provenance["sampler"], provenance["num_inference_steps"], provenance["samples"]) == ("ddim", 2, 2)


# (arguments, exit status, a phrase of the one-line message)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """A finished smoke run to sample from (module-wide: the table's sample rows share it)."""
    runs_dir = tmp_path_factory.mktemp("cli-runs")
    env = {**os.environ, "T2I_RUNS_DIR": str(runs_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "t2i",
            "train",
            "--experiment",
            "mnist",
            "--profile",
            "smoke",
            "--run-name",
            "ok",
            "--set",
            "epochs=1",
            "--set",
            "train_subset=16",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return runs_dir / "mnist" / "ok"


def test_figures_into_a_read_only_reports_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from tests.helpers import mounts

    with mounts.tmpfs(tmp_path / "read-only", 1, read_only=True) as folder:
        monkeypatch.setenv("T2I_REPORTS_DIR", str(folder))
        assert cli.main(["figures", "--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ") and "Read-only" in err, err


def test_sampling_onto_a_full_disk_is_one_line_naming_the_image_and_leaves_no_partial_file(
    sample_run, tmp_path, capsys
):
    from tests.helpers import mounts

    with mounts.tmpfs(tmp_path / "full", 0.05) as folder:  # 50 KiB: fill all but a few bytes
        (folder / "filler").write_bytes(b"\0" * (50 * 1024 - 4096))
        out = folder / "grid.png"
        assert (
            cli.main(
                [
                    "sample",
                    str(sample_run),
                    "--prompt",
                    "A handwritten digit 3",
                    "--samples-per-prompt",
                    "16",
                    "--out",
                    str(out),
                ]
            )
            == 1
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and str(out) in err[-1], err
        assert sorted(p.name for p in folder.iterdir()) == ["filler"]  # no 0-byte or half image, no temporary file
