"""Training that survives the cluster: kills, preemption signals, damaged checkpoints, numerical faults."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from t2i import checkpoints, data, objectives, paths, runs, train
from t2i.preemption import MARKER, REQUEUE_EXIT_CODE

ROOT = Path(__file__).resolve().parents[1]


def cli_train(cfg_overrides: dict, run_name: str, tiny_clip_dir) -> subprocess.Popen:
    """`python -m t2i train` in its own process, as a batch job would run it."""
    sets = {"text_encoder": str(tiny_clip_dir), "cross_attention_dim": 32, **cfg_overrides}
    args = [sys.executable, "-m", "t2i", "train", "--experiment", "mnist", "--profile", "smoke", "--run-name", run_name]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return subprocess.Popen(args, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training ended (code {proc.returncode}) before the test could interrupt it:\n"
                        f"{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.002)


def latest_step(run: Path) -> int:
    pointer = checkpoints.checkpoint_dir(run) / checkpoints.LATEST
    try:
        return checkpoints.load_state(checkpoints.checkpoint_dir(run) / pointer.read_text().strip())["step"]
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    for ema in (False, True):
        a = checkpoints.load_unet(checkpoints.latest(run_a), ema=ema).state_dict()
        b = checkpoints.load_unet(checkpoints.latest(run_b), ema=ema).state_dict()
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{len(different)} tensors differ (ema={ema}), e.g. {different[:3]}"


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tiny_clip_dir):
    settings = {"epochs": 4, "checkpoint_every_steps": 1}  # 4 steps per epoch; a checkpoint after every step
    finish(cli_train(settings, "straight", tiny_clip_dir))

    killed = paths.run_dir("mnist", "killed")
    proc = cli_train(settings, "killed", tiny_clip_dir)
    wait_for(lambda: latest_step(killed) >= 6, proc)  # mid-epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = checkpoints.load_state(checkpoints.latest(killed))["step"]
    assert stopped_at < 16, "the kill landed after the run finished; nothing was tested"

    out = finish(cli_train(settings, "killed", tiny_clip_dir))
    assert "resuming killed from" in out
    assert_same_weights(paths.run_dir("mnist", "straight"), killed)
    assert runs.read_loss_log(killed)["loss"].tolist() == runs.read_loss_log(paths.run_dir("mnist", "straight"))["loss"].tolist()


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_preemption_signal_checkpoints_exits_for_requeue_and_resumes_exactly(tiny_clip_dir, signum):
    settings = {"epochs": 25}
    finish(cli_train(settings, "straight", tiny_clip_dir))

    run = paths.run_dir("mnist", "preempted")
    proc = cli_train(settings, "preempted", tiny_clip_dir)
    wait_for(lambda: latest_step(run) >= 4, proc)  # after the first epoch checkpoint
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == REQUEUE_EXIT_CODE, out
    assert signal.Signals(signum).name in out
    ckpt = checkpoints.latest(run)
    assert (run / MARKER).read_text().strip() == ckpt.name
    assert checkpoints.load_state(ckpt)["step"] < 100, "the signal arrived after the run finished"

    finish(cli_train(settings, "preempted", tiny_clip_dir))
    assert not (run / MARKER).exists()
    assert_same_weights(paths.run_dir("mnist", "straight"), run)


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(smoke_cfg, fit, monkeypatch):
    cfg = smoke_cfg.replace(epochs=2)
    run = paths.run_dir("mnist", "crash")
    fit(cfg.replace(epochs=1), run)

    def die(directory):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoints, "_fsync_tree", die)  # files written, not yet renamed into place
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run)
    assert checkpoints.latest(run).name == "epoch-0001"
    monkeypatch.undo()

    fit(cfg, run)  # resumes from epoch 1, replaces the stale temp folder
    assert checkpoints.latest(run).name == "epoch-0002"
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))


def test_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_warning(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "damaged"))
    weights = checkpoints.checkpoint_dir(run) / "epoch-0002" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated, as after a full disk
    with pytest.warns(UserWarning, match="epoch-0002.*damaged"):
        assert checkpoints.latest(run).name == "epoch-0001"


def test_only_the_last_k_checkpoints_and_the_epoch_milestones_are_kept(smoke_cfg, fit):
    cfg = smoke_cfg.replace(epochs=4, checkpoint_every=2, checkpoint_every_steps=1, keep_checkpoints=2)
    run = fit(cfg, paths.run_dir("mnist", "prune"))
    kept = sorted(p.name for p in checkpoints.candidates(run))
    # newest two (steps 15, 16 = epoch 4) plus the milestone of epoch 2
    assert kept == ["epoch-0002", "epoch-0004", "step-00000015"]


class PoisonAt:
    """Wraps the real objective; from step ``at`` on it returns NaN (or a finite loss with a NaN gradient)."""

    def __init__(self, objective, at: int, gradient_only: bool = False):
        self.objective, self.at, self.gradient_only, self.calls = objective, at, gradient_only, 0

    def to(self, device):
        self.objective = self.objective.to(device)
        return self

    def __call__(self, model, batch, generator, timer=None):
        self.calls += 1
        loss = self.objective(model, batch, generator)
        if self.calls < self.at:
            return loss
        if self.gradient_only:  # sqrt'(0) = inf: the value stays finite, the gradient does not
            p = next(model.parameters())
            return loss + 0.0 * torch.sqrt((p - p.detach()).abs().sum())
        return loss * float("nan")


@pytest.mark.parametrize("gradient_only", [False, True], ids=["loss", "gradient"])
def test_non_finite_loss_or_gradient_stops_at_that_step_naming_the_last_checkpoint(smoke_cfg, fit, caption_table,
                                                                                  gradient_only):
    from t2i.sampling import training_scheduler

    cfg = smoke_cfg.replace(epochs=3)
    run = paths.run_dir("mnist", "nan")
    objective = PoisonAt(objectives.EpsilonObjective(training_scheduler(cfg), caption_table, cfg.p_uncond), at=7,
                         gradient_only=gradient_only)
    with pytest.raises(train.NonFiniteError, match="at step 7 .*epoch-0001"):
        fit(cfg, run, objective=objective)
    assert [p.name for p in checkpoints.candidates(run)] == ["epoch-0001"]


def test_gradient_clipping_changes_the_update(smoke_cfg, fit):
    dataset = data.load_dataset(smoke_cfg)
    plain = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "plain"), dataset)
    clipped = fit(smoke_cfg.replace(epochs=1, grad_clip=1e-3), paths.run_dir("mnist", "clip"), dataset)
    a = checkpoints.load_unet(checkpoints.latest(plain)).state_dict()
    b = checkpoints.load_unet(checkpoints.latest(clipped)).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("switch", [{"mixed_precision": "bf16"}, {"channels_last": True}, {"compile": True}],
                         ids=["bf16", "channels_last", "compile-full (legacy true)"])
def test_speed_switches_train_on_cpu(smoke_cfg, fit, switch):
    cfg = smoke_cfg.replace(epochs=1, train_subset=32, **switch)
    run = fit(cfg, paths.run_dir("mnist", "switch"))
    losses = runs.read_loss_log(run)["loss"]
    assert len(losses) == 2 and all(map(lambda v: v == v and v < 10, losses))
    unet = checkpoints.load_unet(checkpoints.latest(run))
    assert all(p.dtype == torch.float32 for p in unet.parameters())  # master weights stay fp32 under bf16


def test_regional_compilation_compiles_every_block_and_computes_the_same_step(smoke_cfg):
    """Each ResNet and attention block compiled in place: the weights keep their names (checkpoints load into an
    uncompiled UNet) and forward + backward agree with eager to float rounding. (A one-level UNet: every distinct
    block shape is one compilation, about 10 s each on this CPU with a cold cache.)"""
    import torch.nn.functional as F

    from t2i.models import build_unet, compile_regions

    cfg = smoke_cfg.replace(block_out_channels=(8,), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",),
                            up_block_types=("CrossAttnUpBlock2D",))
    torch.manual_seed(0)
    eager = build_unet(cfg)
    compiled = build_unet(cfg)
    compiled.load_state_dict(eager.state_dict())
    blocks = compile_regions(compiled)
    assert blocks == sum(type(m).__name__ in ("ResnetBlock2D", "Transformer2DModel") for m in eager.modules()) > 0
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(4, *cfg.model_shape)
    t = torch.tensor([1, 10, 100, 500])
    emb = torch.randn(4, cfg.max_tokens, cfg.cross_attention_dim)
    out = {}
    for name, unet in (("eager", eager), ("compiled", compiled)):
        out[name] = unet(x, t, encoder_hidden_states=emb).sample
        F.mse_loss(out[name], x).backward()
    torch.testing.assert_close(out["compiled"], out["eager"], rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5)


def test_the_trainer_compiles_regions_of_the_unet_it_trains(smoke_cfg, fit, monkeypatch):
    """compile="regional" hands the trainer's own UNet to compile_regions (compiling itself is tested above)."""
    from t2i import train

    compiled = []
    monkeypatch.setattr(train, "compile_regions", lambda unet: compiled.append(unet) or 0)
    run = fit(smoke_cfg.replace(epochs=1, train_subset=32, compile="regional"), paths.run_dir("mnist", "regional"))
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "UNet2DConditionModel"
    assert runs.load_config(run).compile == "regional" and checkpoints.latest(run) is not None


def test_weights_load_without_pickle(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "safe"))
    files = {p.suffix for p in checkpoints.latest(run).rglob("*") if p.is_file()}
    assert files == {".safetensors", ".json"}
