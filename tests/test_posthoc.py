"""t2i.posthoc: power-function EMAs, snapshots and EDM2's least-squares reconstruction of any EMA length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t2i import cli, paths, posthoc
from t2i.errors import RunError


def test_gamma_is_edm2s_exponent_for_a_relative_length():
    for sigma_rel in (0.01, 0.05, 0.10, 0.25):
        g = posthoc.gamma(sigma_rel)
        assert math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(sigma_rel)  # EDM2 eq. 3
    assert posthoc.gamma(0.05) == pytest.approx(16.97, abs=0.01)  # EDM2 sec. 3.3's tracked pair
    assert posthoc.gamma(0.10) == pytest.approx(6.94, abs=0.01)
    assert posthoc.beta(0.05, 1) == 0.0  # the first step copies the weights


def trajectory(steps: int, size: int = 2000, seed: int = 0):
    """Weights that drift and jitter, as SGD's do."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(size)
    drift = torch.randn(size, generator=g) * 0.01
    for _ in range(steps):
        w = w + drift + 0.05 * torch.randn(size, generator=g)
        yield w


def test_a_length_reconstructed_from_two_others_matches_tracking_it_directly(tmp_path):
    """Track 0.05 and 0.10 with snapshots, and 0.07 directly; reconstruct 0.07 from the snapshots. Its error, relative
    to how far the EMA sits from the last weights, is within twice the profile-fit error EDM2's least squares leaves
    (posthoc.profile_error, its Fig. 5's fit) plus half precision's rounding."""
    weight = torch.nn.Parameter(torch.zeros(2000))
    tracked = posthoc.PowerEMA([("w", weight)], (0.05, 0.10), every=50)
    truth = posthoc.PowerEMA([("w", weight)], (0.07, 0.08))
    for w in trajectory(2000):
        weight.data.copy_(w)
        tracked.update(tmp_path, write=True)
        truth.step()
    params, info = posthoc.reconstruct(tmp_path, 0.07)
    assert info["snapshots"] == 40 and info["step"] == 2000
    error = (params["w"] - truth.averages[0][0]).norm() / (truth.averages[0][0] - weight.detach()).norm()
    assert error < 2 * info["profile_error"] + 0.01, (float(error), info["profile_error"])
    again, _ = posthoc.reconstruct(tmp_path, 0.07)  # from the cache
    assert torch.equal(again["w"], params["w"])


def test_the_coefficients_are_edm2s_closed_form_normalised_to_one():
    steps, lengths = np.repeat([100, 200, 300], 2), np.tile([0.05, 0.10], 3)
    x = posthoc.coefficients(steps, lengths, 300, 0.10)
    assert x.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(x, [0, 0, 0, 0, 0, 1], atol=1e-8)  # a length that was tracked is its own snapshot
    assert posthoc.profile_error(steps, lengths, x, 300, 0.10) == pytest.approx(0, abs=1e-6)


def test_ema_length_is_refused_in_one_line_outside_its_range_or_without_snapshots(smoke_cfg, fit, tmp_path, capsys):
    plain = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "plain"))
    with pytest.raises(RunError, match="outside the range"):
        posthoc.reconstruct(plain, 0.5)
    for length, phrase in (("0.05", "needs a run trained with ema_snapshot_every"), ("0.4", "outside the range")):
        code = cli.main(
            [
                "sample",
                str(plain),
                "--prompt",
                "A handwritten digit 3",
                "--ema-length",
                length,
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and phrase in err[-1] and not (tmp_path / "g.png").exists()


def test_a_run_with_snapshots_samples_at_any_length_and_says_which(smoke_cfg, fit, tmp_path):
    run = fit(smoke_cfg.replace(epochs=2, ema_snapshot_every=2), paths.run_dir("mnist", "snapshots"))
    assert [s for s, _ in posthoc.snapshots(run)] == [2, 4, 6, 8]
    assert (
        cli.main(
            [
                "sample",
                str(run),
                "--prompt",
                "A handwritten digit 3",
                "--ema-length",
                "0.03",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )
    from t2i import reports

    assert reports.read_provenance(tmp_path / "g.png")["weights"].startswith("post-hoc EMA sigma_rel=0.03")
    from t2i import checkpoints

    newest = checkpoints.resolve(run, None)  # presets (what `make ema` writes) become the default weights
    posthoc.write_presets(run, {"cfg": 0.04}, newest, checkpoints.manifest_sha256(newest), report="summary.md")
    for flags, weights in (
        ([], "post-hoc EMA sigma_rel=0.04"),
        (["--no-ema"], "raw"),
        (["--ema-length", "0.2"], "post-hoc EMA sigma_rel=0.2 "),
    ):
        assert (
            cli.main(
                ["sample", str(run), "--prompt", "A handwritten digit 3", "--out", str(tmp_path / "g.png"), *flags]
            )
            == 0
        )
        made = reports.read_provenance(tmp_path / "g.png")["weights"]
        assert made.startswith(weights) and ("preset" in made) == (not flags), made


@pytest.fixture
def snapshot_run(tmp_path):
    """A folder of 40 snapshots of a 2,000-weight trajectory (0.05 and 0.10 tracked, one every 50 updates)."""
    weight = torch.nn.Parameter(torch.zeros(2000))
    tracked = posthoc.PowerEMA([("w", weight)], (0.05, 0.10), every=50)
    for w in trajectory(2000):
        weight.data.copy_(w)
        tracked.update(tmp_path, write=True)
    return tmp_path


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "random bytes":  # 4 KiB of noise in the middle of the tensors
        middle = len(data) // 2
        path.write_bytes(
            data[:middle] + np.random.default_rng(0).bytes(4096)[: len(data) - middle] + data[middle + 4096 :]
        )
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("not a snapshot\n")
    elif how == "header":
        path.write_bytes(data[:9] + b"#" + data[10:])  # the JSON header no longer parses
    elif how == "nan":  # a well-formed file with a valid checksum whose values are not finite
        from safetensors.torch import load_file, safe_open

        with safe_open(path, "pt") as f:
            metadata = f.metadata()
        tensors = {k: torch.full_like(t, float("nan")) for k, t in load_file(path).items()}
        posthoc._save(path, tensors, {k: v for k, v in metadata.items() if k != "sha256"})
    elif how == "foreign":  # another model's snapshot: other shapes, valid checksum
        from safetensors.torch import load_file, safe_open

        with safe_open(path, "pt") as f:
            metadata = f.metadata()
        tensors = {k: torch.zeros(7, dtype=t.dtype) for k, t in load_file(path).items()}
        posthoc._save(path, tensors, {k: v for k, v in metadata.items() if k != "sha256"})


@pytest.mark.parametrize("how", ["random bytes", "truncated", "empty", "text", "header", "nan", "foreign"])
def test_a_damaged_snapshot_is_left_out_by_name_and_the_fit_error_says_what_that_cost(snapshot_run, how):
    whole, whole_info = posthoc.reconstruct(snapshot_run, 0.07)  # cached: the damaged run must not reuse it
    bad = posthoc.snapshots(snapshot_run)[20][1]
    damage(bad, how)
    with pytest.warns(UserWarning, match=f"left out {bad}"):
        params, info = posthoc.reconstruct(snapshot_run, 0.07)
    assert info["left_out"] == [bad.name] and info["snapshots"] == 39
    assert torch.isfinite(params["w"]).all() and not torch.equal(params["w"], whole["w"])
    assert info["profile_error"] >= whole_info["profile_error"] - 1e-12  # the fit without it, stated


def test_a_damaged_newest_snapshot_or_too_few_good_ones_is_an_error_that_names_the_file(snapshot_run):
    found = posthoc.snapshots(snapshot_run)
    damage(found[-1][1], "random bytes")
    with pytest.warns(UserWarning), pytest.raises(RunError, match=f"newest post-hoc EMA snapshot, {found[-1][1]}"):
        posthoc.reconstruct(snapshot_run, 0.07)
    for _, path in found[:-2]:  # only the newest up to step 1950 is left
        damage(path, "empty")
    with pytest.warns(UserWarning), pytest.raises(RunError, match="fewer than two usable"):
        posthoc.reconstruct(snapshot_run, 0.07, at_step=found[-2][0])


def test_the_reconstruction_cache_is_verified_and_rebuilt_when_damaged(snapshot_run):
    params, _ = posthoc.reconstruct(snapshot_run, 0.07)
    [cache] = (snapshot_run / posthoc.SNAPSHOTS / posthoc.RECONSTRUCTED).glob("*.safetensors")
    damage(cache, "random bytes")
    with pytest.warns(UserWarning, match="rebuilding the post-hoc EMA cache"):
        again, _ = posthoc.reconstruct(snapshot_run, 0.07)
    assert torch.equal(again["w"], params["w"])


def test_snapshots_are_named_in_the_steps_checkpoints_count_with_gradient_accumulation(smoke_cfg, fit):
    """Accumulating 2 batches per update: a snapshot every update is named by the batch step (as checkpoints are), its
    update count in its metadata, so a checkpoint reconstructs from the snapshots taken before it."""
    from safetensors import safe_open

    from t2i import checkpoints

    cfg = smoke_cfg.replace(epochs=2, ema_snapshot_every=1, gradient_accumulation_steps=2, checkpoint_every_steps=2)
    run = fit(cfg, paths.run_dir("mnist", "accumulated"))
    found = posthoc.snapshots(run)
    assert [s for s, _ in found] == [2, 4, 6, 8]  # 4 batches per epoch, 2 updates
    for step, path in found:
        with safe_open(path, "pt") as f:
            assert int(f.metadata()["updates"]) == step // 2 and int(f.metadata()["step"]) == step
    checkpoint = checkpoints.resolve(run, None)
    _, info = posthoc.reconstruct(run, 0.07, at_step=checkpoints.load_state(checkpoint)["step"])
    assert info["step"] == checkpoints.load_state(checkpoint)["step"] == 8


def test_presets_apply_only_to_the_checkpoint_they_were_chosen_on(tmp_path):
    posthoc.write_presets(tmp_path, {"cfg": 0.05, "unguided": 0.1}, tmp_path / "epoch-0002", "abc", report="r.md")
    assert posthoc.preset(tmp_path, tmp_path / "epoch-0002", "abc") == 0.05
    assert posthoc.preset(tmp_path, tmp_path / "epoch-0002", "abc", "autoguidance") is None
    with pytest.warns(UserWarning, match="chosen on epoch-0002, not on epoch-0003"):
        assert posthoc.preset(tmp_path, tmp_path / "epoch-0003", "def") is None
    (tmp_path / posthoc.PRESETS).write_text("{")
    with pytest.raises(RunError, match="is damaged"):
        posthoc.preset(tmp_path, tmp_path / "epoch-0002", "abc")


def test_the_density_table_is_the_runs_own_fit_at_its_spacing_and_its_disk_is_measured(snapshot_run):
    """`make ema`'s snapshot-density table: at the run's own spacing each length's fit error is the one its
    reconstruction reports, the disk is the files' own, and halving the spacing never fits worse."""
    from t2i import ema_front, ema_report

    rows = {r["spacing"].split(",")[0]: r for r in ema_front.density(snapshot_run, 2000, spacings=(0.5, 1, 2))}
    own = rows["1x"]
    files = [p for _, p in posthoc.snapshots(snapshot_run)]
    assert own["snapshots"] == len(files) == 40 and own["every_steps"] == 50
    assert own["disk_mib"] == round(sum(p.stat().st_size for p in files) / 2**20, 1)
    assert rows["0.5x"]["snapshots"] == 80 and rows["2x"]["snapshots"] == 20
    for length in ema_front.LENGTHS:
        assert own[f"fit {length:g}"] == round(posthoc.reconstruct(snapshot_run, length)[1]["profile_error"], 4)
        assert rows["0.5x"][f"fit {length:g}"] <= own[f"fit {length:g}"] <= rows["2x"][f"fit {length:g}"]
    assert own["fit 0.01"] > ema_front.FIT_LIMIT >= rows["0.5x"]["fit 0.01"]  # the short end needs denser snapshots
    weight = torch.nn.Parameter(torch.zeros(10))  # a run that tracked other lengths: the table fits with those
    other = posthoc.PowerEMA([("w", weight)], (0.02, 0.2), every=50)
    for w in trajectory(1000, size=10):
        weight.data.copy_(w)
        other.update(snapshot_run / "other", write=True)
    fit = ema_front.density(snapshot_run / "other", 1000, spacings=(1,))[0]["fit 0.01"]
    assert fit == round(posthoc.reconstruct(snapshot_run / "other", 0.01)[1]["profile_error"], 4)
    lines = "\n".join(ema_report._density_lines(list(rows.values())))
    assert "every 50 steps (1x, this run): 40 snapshots" in lines and "0.01, 0.02" in lines
