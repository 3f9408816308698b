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
        code = cli.main(["sample", str(plain), "--prompt", "A handwritten digit 3", "--ema-length", length,
                         "--out", str(tmp_path / "g.png")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and phrase in err[-1] and not (tmp_path / "g.png").exists()


def test_a_run_with_snapshots_samples_at_any_length_and_says_which(smoke_cfg, fit, tmp_path):
    run = fit(smoke_cfg.replace(epochs=2, ema_snapshot_every=2), paths.run_dir("mnist", "snapshots"))
    assert [s for s, _ in posthoc.snapshots(run)] == [2, 4, 6, 8]
    assert cli.main(["sample", str(run), "--prompt", "A handwritten digit 3", "--ema-length", "0.03",
                     "--out", str(tmp_path / "g.png")]) == 0
    from t2i import reports

    assert reports.read_provenance(tmp_path / "g.png")["weights"].startswith("post-hoc EMA sigma_rel=0.03")
