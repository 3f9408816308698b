from t2i import checkpoints, cli, paths


def test_train_then_sample_from_the_command_line(smoke_cfg, tmp_path):
    overrides = ["--set", f"text_encoder={smoke_cfg.text_encoder}", "--set", "cross_attention_dim=32", "--set", "epochs=1"]
    assert cli.main(["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", "cli", *overrides]) == 0
    run = paths.run_dir("mnist", "cli")
    assert checkpoints.latest(run).name == "epoch-0001"
    out = tmp_path / "grid.png"
    assert cli.main(["sample", str(run), "--prompt", "A handwritten digit 3", "--prompt", "A handwritten digit 4",
                     "--guidance-scale", "5", "--samples-per-prompt", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert out.with_name("grid.provenance.json").exists()
