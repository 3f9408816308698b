"""Metrics against pytorch-fid and the formulas. The real Inception weights cannot be downloaded here, so the same
network is built with random weights and saved where torch.hub (and so pytorch-fid) looks for them."""

import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from pytorch_fid import inception as fid_inception

from t2i import configs, data, metrics

FIDInception = [
    ("Mixed_5b", fid_inception.FIDInceptionA, (192, 32)),
    ("Mixed_5c", fid_inception.FIDInceptionA, (256, 64)),
    ("Mixed_5d", fid_inception.FIDInceptionA, (288, 64)),
    ("Mixed_6b", fid_inception.FIDInceptionC, (768, 128)),
    ("Mixed_6c", fid_inception.FIDInceptionC, (768, 160)),
    ("Mixed_6d", fid_inception.FIDInceptionC, (768, 160)),
    ("Mixed_6e", fid_inception.FIDInceptionC, (768, 192)),
    ("Mixed_7b", fid_inception.FIDInceptionE_1, (1280,)),
    ("Mixed_7c", fid_inception.FIDInceptionE_2, (2048,)),
]


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A TORCH_HOME holding pytorch-fid's Inception (the structure of ``fid_inception_v3``) with random weights."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    net = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block, args in FIDInception:
        setattr(net, name, block(*args))
    path = home / "hub" / "checkpoints" / metrics.FID_WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return home


@pytest.fixture
def extractor(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return metrics.InceptionExtractor(batch_size=8)


def digits(n: int, offset: int = 0) -> torch.Tensor:
    images, _ = data.load_images(configs.get("mnist", "demo", resolution=32), "train")
    return images[offset : offset + n]


def test_fid_on_two_folders_equals_the_pytorch_fid_command(tmp_path, torch_home, extractor):
    for name, offset in (("a", 0), ("b", 100)):
        (tmp_path / name).mkdir()
        for i, image in enumerate(metrics.to_uint8(digits(16, offset))):
            Image.fromarray(image[0].numpy()).save(tmp_path / name / f"{i:03d}.png")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytorch_fid",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
        ],
        env={"TORCH_HOME": str(torch_home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    theirs = float(re.search(r"FID:\s+([0-9.eE+-]+)", result.stdout).group(1))
    ours = metrics.frechet_distance(
        extractor(metrics.load_image_folder(tmp_path / "a")), extractor(metrics.load_image_folder(tmp_path / "b"))
    )
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_frechet_distance_is_the_direct_formula():
    rng = np.random.default_rng(0)
    a = metrics.Features(rng.normal(size=(200, 8)), None)
    b = metrics.Features(rng.normal(loc=0.5, scale=1.5, size=(200, 8)), None)
    mu1, mu2 = a.features.mean(0), b.features.mean(0)
    s1, s2 = np.cov(a.features, rowvar=False), np.cov(b.features, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(direct, rel=1e-6)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    same = [
        metrics.kernel_inception_distance(
            metrics.Features(rng.normal(size=(300, 16)), None),
            metrics.Features(rng.normal(size=(300, 16)), None),
            subsets=20,
            seed=s,
        )[0]
        for s in range(10)
    ]
    shifted = metrics.kernel_inception_distance(
        metrics.Features(rng.normal(size=(300, 16)), None),
        metrics.Features(rng.normal(loc=0.3, size=(300, 16)), None),
        subsets=20,
    )
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-4  # unbiased: centred on 0
    assert shifted[0] > 10 * abs(np.mean(same)) and shifted[0] > 0


def test_mmd_is_the_unbiased_formula_and_kid_averages_it_over_half_size_subsets():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 4)), rng.normal(loc=1.0, size=(50, 4))
    k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
    n = 50
    direct = (
        (k(x, x).sum() - np.trace(k(x, x))) / (n * (n - 1))
        + (k(y, y).sum() - np.trace(k(y, y))) / (n * (n - 1))
        - 2 * k(x, y).mean()
    )
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(direct)
    kid, std = metrics.kernel_inception_distance(metrics.Features(x, None), metrics.Features(y, None), subsets=200)
    assert std > 0  # subsets of 25 out of 50 differ
    assert kid == pytest.approx(direct, rel=0.15)  # unbiased at any subset size: centred on the full-set value


def test_inception_score_extremes():
    uniform = metrics.Features(np.zeros((40, 1)), np.zeros((40, 10)))
    assert metrics.inception_score(uniform, splits=4)[0] == pytest.approx(1.0)
    confident = metrics.Features(np.zeros((400, 1)), 50.0 * np.eye(10)[np.arange(400) % 10])
    assert metrics.inception_score(confident, splits=4)[0] == pytest.approx(10.0, rel=0.05)
    # a sweep's images come sorted by prompt: the splits must still see every class
    sorted_by_class = metrics.Features(np.zeros((400, 1)), 50.0 * np.eye(10)[np.arange(400) // 40])
    assert metrics.inception_score(sorted_by_class, splits=10)[0] == pytest.approx(10.0, rel=0.1)


def test_images_are_quantised_by_rounding():
    x = torch.tensor([0.0, 0.5 / 255, 0.499, 0.502, 1.0, 1.2, -0.1])
    assert metrics.to_uint8(x).tolist() == [0, 0, 127, 128, 255, 255, 0]  # 0.5/255 rounds half to even


def test_grayscale_is_repeated_to_three_channels(extractor):
    gray = metrics.to_uint8(digits(4))
    a, b = extractor(gray), extractor(gray.repeat(1, 3, 1, 1))
    assert a.features.shape == (4, 2048) and a.logits.shape == (4, 1008)
    assert np.array_equal(a.features, b.features)


def test_reference_features_are_cached_and_recomputed_when_the_key_changes(tmp_path):
    calls = []

    class Counting:
        name = "counting"

        def __call__(self, images):
            calls.append(len(images))
            return metrics.Features(images.flatten(1).double().numpy(), None)

    images = lambda: metrics.to_uint8(digits(6))  # noqa: E731
    first = metrics.cached_features(Counting(), images, {"dataset": "digits", "n": 6}, tmp_path)
    again = metrics.cached_features(Counting(), images, {"dataset": "digits", "n": 6}, tmp_path)
    assert calls == [6] and np.array_equal(first.features, again.features)
    metrics.cached_features(Counting(), images, {"dataset": "digits", "n": 6, "resolution": 32}, tmp_path)
    assert calls == [6, 6]


def test_missing_inception_weights_name_the_file_and_make_assets(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"pt_inception-2015-12-05-6726825d\.pth.*make assets"):
        metrics.InceptionExtractor()


def test_clip_score_is_100_times_the_clamped_cosine(tiny_clip_scorer_dir):
    from transformers import CLIPModel, CLIPProcessor

    scorer = metrics.ClipScorer(str(tiny_clip_scorer_dir))
    images, prompts = digits(5), [f"A handwritten digit {d}" for d in range(5)]
    model = CLIPModel.from_pretrained(tiny_clip_scorer_dir)
    processor = CLIPProcessor.from_pretrained(tiny_clip_scorer_dir)
    inputs = processor(
        text=prompts, images=list(metrics.to_uint8(images).repeat(1, 3, 1, 1)), return_tensors="pt", padding=True
    )
    with torch.no_grad():
        out = model(**inputs)
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert scorer(images, prompts, batch_size=2) == pytest.approx((100 * cos.clamp(min=0)).mean().item(), abs=1e-4)


def test_missing_clip_model_says_make_assets():
    with pytest.raises(FileNotFoundError, match="make assets"):
        metrics.ClipScorer("openai/not-staged-here")


def test_fid_where_pytorch_fid_finds_no_real_square_root_is_nan_with_a_warning(monkeypatch):
    """A periodic evaluation at small N (40 images of 1,024-d judge features) once made pytorch-fid raise "Imaginary
    component" and would have ended the training run: FID is undefined there, so it is NaN, said once, not a crash."""
    import numpy as np

    from t2i import metrics

    def undefined(*args):
        raise ValueError("Imaginary component 0.004614335014899164")  # what pytorch-fid raised on that run

    monkeypatch.setattr(metrics, "calculate_frechet_distance", undefined)
    features = metrics.Features(np.random.default_rng(0).normal(size=(40, 1024)), None)
    with pytest.warns(UserWarning, match="FID undefined for 40 vs 40 images of 1024-d features"):
        assert np.isnan(metrics.frechet_distance(features, features))
    monkeypatch.setattr(metrics, "calculate_frechet_distance", lambda *a: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"):  # any other failure is still a failure
        metrics.frechet_distance(features, features)


def test_dinov2_features_are_the_class_token_of_images_resized_and_normalised_as_dgm_eval_does(tmp_path):
    """A tiny random Dinov2Model saved like the hub checkpoint: the extractor loads it through from_pretrained, resizes
    to 224 px, normalises with ImageNet's statistics and returns the layer-normed CLS token; grayscale works too."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(
        Dinov2Config(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            patch_size=14,
            image_size=224,
        )
    ).eval()
    model.save_pretrained(tmp_path / "dinov2")
    extractor = metrics.DinoV2Extractor(str(tmp_path / "dinov2"))
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    found = extractor(images)
    assert found.features.shape == (3, 16) and found.logits is None
    x = torch.nn.functional.interpolate(
        images.float().repeat(1, 3, 1, 1) / 255, size=(224, 224), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    x = (x - torch.tensor(metrics.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(metrics.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(pixel_values=x).last_hidden_state[:, 0]  # (transformers layer-norms the sequence output)
    np.testing.assert_allclose(found.features, expected.double().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="make assets"):
        metrics.DinoV2Extractor(str(tmp_path / "absent"))
