"""t2i.train: the loop and what its options change (accumulation, gradient checkpointing, LR schedules, precision,
non-finite faults, clipping, the speed switches, compilation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from t2i import checkpoints, data, objectives, paths, runs, train
from tests.helpers import weights


class FixedNoise:
    """An objective whose noise and timestep depend on each image alone, so it does not matter how images are grouped
    into batches: the ground truth for gradient accumulation."""

    def __init__(self, table):
        self.table = table

    def to(self, device):
        return FixedNoise(self.table.to(device))

    def __call__(self, model, batch, generator, timer=None):
        x0, ids = batch
        eps = torch.sin(37.0 * x0 + 1.0)
        t = torch.full((len(x0),), 500, device=x0.device)
        pred = model(0.6 * x0 + 0.8 * eps, t, encoder_hidden_states=self.table.embed(ids)).sample
        return F.mse_loss(pred, eps)


def test_two_accumulated_batches_of_b_make_the_update_of_one_batch_of_2b(smoke_cfg, caption_table):
    dataset = data.load_dataset(smoke_cfg)
    full = train.fit(
        smoke_cfg.replace(epochs=1, batch_size=32), paths.run_dir("mnist", "b32"), dataset, FixedNoise(caption_table)
    )
    halves = train.fit(
        smoke_cfg.replace(epochs=1, batch_size=16, gradient_accumulation_steps=2),
        paths.run_dir("mnist", "b16x2"),
        dataset,
        FixedNoise(caption_table),
    )
    a, b = weights(full), weights(halves)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    tensors = checkpoints.load_tensors(checkpoints.latest(halves))
    assert tensors["optimizer.0.step"].item() == 2  # 4 batches, 2 updates


SWITCHES = {  # config switch -> what it must change on the model the trainer trains
    "gradient_checkpointing": lambda trainer: trainer.accelerator.unwrap_model(trainer.unet).is_gradient_checkpointing,
    "channels_last": lambda trainer: (
        trainer.accelerator.unwrap_model(trainer.unet)
        .down_blocks[0]
        .resnets[0]
        .conv1.weight.is_contiguous(memory_format=torch.channels_last)
    ),
    "compile": lambda trainer: isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_the_trainer_turns_on_each_switch_it_is_given_and_only_then(smoke_cfg, caption_table, switch, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")  # the trainer sets it; the test leaves it as it was
    on = {"compile": "full"}.get(switch, True)
    found = {}
    for value in (on, SMOKE_DEFAULTS[switch]):
        cfg = smoke_cfg.replace(epochs=1, **{switch: value})
        trainer = train.Trainer(
            cfg,
            paths.run_dir("mnist", f"{switch}-{value}"),
            data.load_dataset(cfg),
            objectives.for_config(cfg, caption_table),
            10,
            False,
        )
        found[value] = bool(SWITCHES[switch](trainer))
    assert found == {on: True, SMOKE_DEFAULTS[switch]: False}


SMOKE_DEFAULTS = {"gradient_checkpointing": False, "channels_last": False, "compile": "off"}


def test_a_run_with_gradient_checkpointing_trains_like_one_without(smoke_cfg, fit):
    a = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "no-ckpt"))
    b = fit(smoke_cfg.replace(epochs=1, gradient_checkpointing=True), paths.run_dir("mnist", "grad-ckpt"))
    for key, value in weights(a).items():
        torch.testing.assert_close(value, weights(b)[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("schedule, final", [("constant", 1.0), ("cosine", 0.0), ("linear", 0.0)])
def test_the_lr_schedule_is_chosen_by_name_over_all_optimizer_steps(smoke_cfg, fit, schedule, final):
    run = fit(smoke_cfg.replace(epochs=2, lr_schedule=schedule, lr_warmup_steps=2), paths.run_dir("mnist", schedule))
    last_lr = checkpoints.load_state(checkpoints.latest(run))["lr_schedule"]["_last_lr"][0]
    assert last_lr == pytest.approx(final * smoke_cfg.learning_rate, abs=1e-9)


@pytest.mark.parametrize("setting, used", [("auto", "bf16"), ("no", "no")])
def test_an_accelerate_precision_setting_is_honoured_when_the_config_says_auto(
    smoke_cfg, fit, monkeypatch, setting, used
):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    run = fit(smoke_cfg.replace(epochs=1, train_subset=16, mixed_precision=setting), paths.run_dir("mnist", setting))
    assert checkpoints.load_state(checkpoints.latest(run))["precision"] == used  # a config's own choice wins


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
def test_non_finite_loss_or_gradient_stops_at_that_step_naming_the_last_checkpoint(
    smoke_cfg, fit, caption_table, gradient_only
):
    from t2i.sampling import training_scheduler

    cfg = smoke_cfg.replace(epochs=3)
    run = paths.run_dir("mnist", "nan")
    objective = PoisonAt(
        objectives.EpsilonObjective(training_scheduler(cfg), caption_table, cfg.p_uncond),
        at=7,
        gradient_only=gradient_only,
    )
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


@pytest.mark.parametrize(
    "switch",
    [{"mixed_precision": "bf16"}, {"channels_last": True}, {"compile": True}],
    ids=["bf16", "channels_last", "compile-full (legacy true)"],
)
def test_speed_switches_train_on_cpu(smoke_cfg, fit, switch, monkeypatch):
    """compile: the whole UNet through dynamo and AOT autograd with the aot_eager backend (inductor's C++ code
    generation takes minutes on this CPU; test_models compiles regions with inductor and checks their numbers)."""
    if "compile" in switch:
        real = torch.compile
        monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, **{**kw, "backend": "aot_eager"}))
    cfg = smoke_cfg.replace(epochs=1, train_subset=32, **switch)
    run = fit(cfg, paths.run_dir("mnist", "switch"))
    losses = runs.read_loss_log(run)["loss"]
    assert len(losses) == 2 and all(map(lambda v: v == v and v < 10, losses))
    unet = checkpoints.load_unet(checkpoints.latest(run))
    assert all(p.dtype == torch.float32 for p in unet.parameters())  # master weights stay fp32 under bf16


def test_the_trainer_compiles_regions_of_the_unet_it_trains(smoke_cfg, fit, monkeypatch):
    """compile="regional" hands the trainer's own UNet to compile_regions (compiling itself is tested above)."""
    from t2i import speed

    compiled = []
    monkeypatch.setattr(speed, "compile_regions", lambda unet: compiled.append(unet) or 0)
    run = fit(smoke_cfg.replace(epochs=1, train_subset=32, compile="regional"), paths.run_dir("mnist", "regional"))
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "UNet2DConditionModel"
    assert runs.load_config(run).compile == "regional" and checkpoints.latest(run) is not None
