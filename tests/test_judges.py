"""t2i.judges: adherence judges that learn held-out classes, train once per dataset and reload by name."""

import torch

from t2i import configs, data
from t2i.judges import Judge, JudgeConfig, train_judge


def test_judge_learns_held_out_digits_and_survives_save_load(tmp_path):
    cfg = configs.get("mnist", "demo")
    judge = train_judge(
        *data.load_images(cfg, "judge_train"), *data.load_images(cfg, "judge_test"), JudgeConfig(epochs=15)
    )
    assert judge.test_accuracy > 0.9  # chance is 0.1
    judge.save(tmp_path / "judge")
    loaded = Judge.load(tmp_path / "judge")
    images, _ = data.load_images(cfg, "train")
    assert torch.equal(loaded.predict(images[:100]), judge.predict(images[:100]))
    assert loaded.test_accuracy == judge.test_accuracy


def test_judge_is_trained_once_per_dataset_and_resolution_and_then_loaded_by_name(monkeypatch):
    from t2i import cli, judges

    cfg = configs.get("mnist", "smoke")
    assert cli.main(["judge", "--experiment", "mnist", "--profile", "smoke"]) == 0
    directory = judges.judge_dir(cfg)
    assert directory.name == "digits-16px" and (directory / "judge.safetensors").exists()
    trained = Judge.load(directory)

    def no_training(*args, **kwargs):
        raise AssertionError("the judge was trained again")

    monkeypatch.setattr(judges, "train_judge", no_training)
    other_run = cfg.replace(block_out_channels=(16, 16, 16, 16), epochs=7)  # same dataset and resolution
    assert judges.for_config(other_run).test_accuracy == trained.test_accuracy
    assert judges.judge_dir(cfg.replace(resolution=28)).name == "digits-28px"  # a different judge


def test_resnet_judge_learns_rgb_classes_and_reloads_by_name(monkeypatch, tmp_path):
    """The CIFAR-style ResNet-18 judge (3x3 stem, no max-pool) on synthetic CIFAR-format shards."""
    from t2i import configs, judges

    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    cfg = configs.get("cifar10", "smoke", judge_epochs=30)
    judge = judges.for_config(cfg)
    assert judge.cfg.arch == "resnet18" and isinstance(judge.net.features.maxpool, torch.nn.Identity)
    assert judge.net.features.conv1.kernel_size == (3, 3) and judge.net.features.conv1.stride == (1, 1)
    assert judge.test_accuracy > 0.2  # chance is 0.1: the hue of the synthetic images encodes the class
    loaded = judges.Judge.load(judges.judge_dir(cfg))
    images, _ = data.load_images(cfg, "judge_test")
    assert torch.equal(loaded.predict(images), judge.predict(images))


def test_attribute_judge_is_multilabel_and_claims_count_only_what_captions_say():
    from t2i.data import celeba
    from t2i.judges import Judge, JudgeConfig, build_net

    vector = torch.from_numpy(celeba.vector(["Male", "Black_Hair", "Brown_Hair", "Mustache", "No_Beard"]))[None].long()
    assert celeba.DATASET.prompts(None, vector) == ["A photo of a man with black hair, a mustache"]
    mask, values = celeba.claim_masks(vector)
    claimed = {celeba.ATTRIBUTES[k]: int(values[0, k]) for k in mask[0].nonzero().flatten().tolist()}
    assert claimed == {"Male": 1, "Black_Hair": 1, "Mustache": 1}  # brown hair and "no beard" lost their collisions
    predicted = values.clone()
    predicted[0, celeba.ATTRIBUTES.index("Mustache")] = 0  # the judge misses the mustache
    predicted[0, celeba.ATTRIBUTES.index("Smiling")] = 1  # and sees a smile nobody claimed: not counted
    assert celeba.DATASET.adherence(predicted, vector) == {"adherence": 2 / 3}

    cfg = JudgeConfig(channels=3, num_classes=40, arch="resnet18", multilabel=True, resolution=16)
    judge = Judge(cfg, build_net(cfg))
    out = judge.predict(torch.rand(3, 3, 64, 64))  # resized to the judge's 16 px
    assert out.shape == (3, 40) and set(out.unique().tolist()) <= {0, 1}
