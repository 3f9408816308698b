import pytest
import torch

from t2i import checkpoints, configs, data, objectives, paths, runs
from t2i.sampling import training_scheduler


def weights(run_dir):
    return checkpoints.load_unet(checkpoints.latest(run_dir)).state_dict()


def test_checkpoint_round_trip_through_from_pretrained(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "a"))
    ckpt = checkpoints.latest(run)
    assert ckpt.name == "epoch-0001"
    for part in ("unet/diffusion_pytorch_model.safetensors", "ema/diffusion_pytorch_model.safetensors",
                 "training_state.safetensors", "state.json", "manifest.json"):
        assert (ckpt / part).exists(), part
    state = checkpoints.load_state(ckpt)
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (1, 4, 0)  # 64 images / batch 16
    assert configs.ExperimentConfig.from_dict(state["config"]) == smoke_cfg.replace(epochs=1)
    assert runs.load_config(run) == smoke_cfg.replace(epochs=1)
    tensors = checkpoints.load_tensors(ckpt)
    assert tensors["optimizer.0.step"].item() == 4 and "rng.0.generator" in tensors
    raw, ema = checkpoints.load_unet(ckpt), checkpoints.load_unet(ckpt, ema=True)
    assert {k: v for k, v in raw.config.items() if k != "_name_or_path"} == {k: v for k, v in ema.config.items() if k != "_name_or_path"}
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    assert not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in checkpoints.checkpoint_dir(run).iterdir())


def test_resume_matches_uninterrupted_run(smoke_cfg, fit):
    dataset = data.load_dataset(smoke_cfg)
    straight = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "straight"), dataset)
    resumed = paths.run_dir("mnist", "resumed")
    fit(smoke_cfg.replace(epochs=1), resumed, dataset)
    fit(smoke_cfg.replace(epochs=2), resumed, dataset)
    for ema in (False, True):
        a = checkpoints.load_unet(checkpoints.latest(straight), ema=ema).state_dict()
        b = checkpoints.load_unet(checkpoints.latest(resumed), ema=ema).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = runs.read_loss_log(resumed)
    assert log["step"].tolist() == list(range(1, 9))
    assert torch.equal(torch.tensor(log["loss"]), torch.tensor(runs.read_loss_log(straight)["loss"]))


def test_resume_drops_loss_rows_past_the_checkpoint(smoke_cfg, fit):
    run = paths.run_dir("mnist", "killed")
    fit(smoke_cfg.replace(epochs=1), run)
    with open(run / runs.LOSS_LOG, "a") as f:  # a job killed mid-epoch 2 logged steps 5..6 and no checkpoint
        f.write("2,5,0.5\n2,6,0.5\n")
    fit(smoke_cfg.replace(epochs=2), run)
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))


def test_a_complete_run_is_not_trained_again(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "done"))
    before = weights(run)
    fit(smoke_cfg.replace(epochs=1), run)
    assert all(torch.equal(before[k], v) for k, v in weights(run).items())


def test_changed_config_refuses_to_resume(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "x"))
    with pytest.raises(ValueError, match="learning_rate"):
        fit(smoke_cfg.replace(epochs=1, learning_rate=0.5), run)


def test_null_prompt_dropout_rate(smoke_cfg, caption_table):
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x_t, t, encoder_hidden_states):
            seen.append(encoder_hidden_states)
            return type("Out", (), {"sample": x_t * 0})()

    objective = objectives.EpsilonObjective(training_scheduler(smoke_cfg), caption_table, p_uncond=0.25)
    x0 = torch.zeros(4000, 1, 4, 4)
    objective(Spy(), (x0, torch.zeros(4000, dtype=torch.long)), torch.Generator().manual_seed(0))
    is_null = (seen[0] == caption_table.null).flatten(1).all(1)
    assert 0.22 < is_null.float().mean().item() < 0.28


def test_missing_mnist_says_make_assets(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make assets"):
        data.load_images(configs.get("mnist", "full"), "train")


def test_bundled_digit_splits_are_disjoint_and_cover_every_image(smoke_cfg):
    from t2i.data.digits import split_indices

    index = split_indices(1797)
    assert {k: len(v) for k, v in index.items()} == {"train": 1257, "judge_train": 359, "judge_test": 181}
    assert sorted(sum((v.tolist() for v in index.values()), [])) == list(range(1797))
    images, labels = data.load_images(smoke_cfg.replace(train_subset=None), "judge_test")
    assert images.shape == (181, 1, smoke_cfg.resolution, smoke_cfg.resolution) and labels.shape == (181,)
    assert images.min() == 0 and images.max() == 1
    x0, _ = data.load_dataset(smoke_cfg.replace(pixel_range=(-1.0, 1.0)))[:]
    assert x0.min() == -1 and x0.max() == 1  # training sees the config's range


def test_a_run_written_before_the_house_plan_still_loads_samples_and_resumes(tmp_path):
    """tests/fixtures/run_c831579 was trained by commit c831579 (its config.json says profile_steps, not
    timing_steps, and compile=false, not "off"); today's code reads its config, samples from it and trains it one
    epoch further."""
    import shutil
    from pathlib import Path

    from t2i import experiment
    from t2i.pipeline import TextToImage

    run = paths.run_dir("mnist", "legacy")
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_c831579", run)
    cfg = runs.load_config(run)
    assert cfg.timing_steps == 0 and cfg.compile == "off" and cfg.block_out_channels == (4, 8, 8, 4)
    images = TextToImage.from_run(run, device="cpu").images(["A handwritten digit 3"], 3.0)
    assert images.shape == (1, 1, 16, 16) and torch.isfinite(images).all()
    experiment.train(cfg.replace(epochs=2), run)
    assert checkpoints.latest(run).name == "epoch-0002"
    assert runs.read_loss_log(run)["step"].tolist() == [1.0, 2.0]
