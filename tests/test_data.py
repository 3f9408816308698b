"""t2i.data: the dataset registry and the bundled and torchvision datasets (splits, missing-data messages)."""

from __future__ import annotations

import pytest

from t2i import configs, data


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
