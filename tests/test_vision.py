"""torchvision models offline, image input sets, and layer-resolved profiles of real architectures."""

from __future__ import annotations

import re
import sys
import urllib.error

import numpy as np
import pytest
import torch

tv = pytest.importorskip(
    "torchvision", reason="needs the vision extra: pip install shatterkit[vision]"
)

from shatterkit import ActivationProbe, GradientProbe, metrics, vision  # noqa: E402

# One xdist group: the module-scoped models and profiles are then built once, not once per worker.
pytestmark = [pytest.mark.requires_torchvision, pytest.mark.xdist_group("vision")]

#: the file torch.hub caches ResNet18_Weights.IMAGENET1K_V1 under (last part of its url)
RESNET18_FILE = "resnet18-f37072fd.pth"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    return vision.load("resnet18", seed=0)[0]


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any download attempt fail as it would offline, and record the URLs tried."""
    tried: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tried


# -- load -----------------------------------------------------------------------------------------


def test_random_init_is_seeded_and_leaves_the_global_rng(resnet18: torch.nn.Module) -> None:
    state = torch.random.get_rng_state()
    again, transform = vision.load("resnet18", seed=0)
    other, _ = vision.load("resnet18", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert transform is None
    assert same_weights(resnet18, again)
    assert not same_weights(resnet18, other)
    assert not again.training


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"])
def test_named_weights_are_read_from_the_torch_home_cache(
    weights: str,
    resnet18: torch.nn.Module,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
    no_download: list[str],
) -> None:
    # A stand-in for the real file, written where torchvision's loader looks for it.
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(resnet18.state_dict(), cache / RESNET18_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, transform = vision.load("resnet18", weights, seed=1)
    assert no_download == []
    assert same_weights(model, resnet18)  # seed=1 would give other weights: the file was read
    assert type(transform).__name__ == "ImageClassification"
    assert list(transform.crop_size) == [224]


def test_hub_dir_is_used_then_restored(
    resnet18: torch.nn.Module, tmp_path, no_download: list[str]
) -> None:
    before = torch.hub.get_dir()
    (tmp_path / "checkpoints").mkdir()
    torch.save(resnet18.state_dict(), tmp_path / "checkpoints" / RESNET18_FILE)
    model, _ = vision.load("resnet18", "IMAGENET1K_V1", hub_dir=tmp_path)
    assert same_weights(model, resnet18)
    assert torch.hub.get_dir() == before


def test_missing_weights_say_which_file_goes_where(
    tmp_path, monkeypatch: pytest.MonkeyPatch, no_download: list[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    directory = str(tmp_path / "hub" / "checkpoints")
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{RESNET18_FILE}'")) as err:
        vision.load("resnet18", "IMAGENET1K_V1")
    assert f"directory '{directory}'" in str(err.value)
    assert no_download == [f"https://download.pytorch.org/models/{RESNET18_FILE}"]


@pytest.mark.parametrize("wrap", [False, True])
def test_state_dict_path(resnet18: torch.nn.Module, tmp_path, wrap: bool) -> None:
    state = resnet18.state_dict()
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": state, "epoch": 3} if wrap else state, path)
    # a pathlib.Path for the bare state dict, a str for the wrapped checkpoint
    model, transform = vision.load("resnet18", str(path) if wrap else path, seed=5)
    assert same_weights(model, resnet18)
    assert transform is None


def test_state_dict_that_does_not_fit(resnet18: torch.nn.Module, tmp_path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(resnet18.state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit torchvision's 'resnet34'"):
        vision.load("resnet34", path)


def test_errors() -> None:
    with pytest.raises(
        ValueError, match=r"model name .* Got 'resnet81'.*close matches: 'resnet18'"
    ):
        vision.load("resnet81")
    with pytest.raises(
        ValueError, match=r"weights name of 'resnet18' \('DEFAULT', 'IMAGENET1K_V1'\)"
    ):
        vision.load("resnet18", "IMAGENET1K_V2")
    with pytest.raises(TypeError, match=r"The 'weights' parameter of load must be None"):
        vision.load("resnet18", 3)


def test_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"pip install shatterkit\[vision\]"):
        vision.load("resnet18")


# -- image inputs ---------------------------------------------------------------------------------


def test_sample_images() -> None:
    imgs = vision.sample_images(48)
    assert imgs.dims == ("sample", "channel", "height", "width")
    assert imgs.shape == (2, 3, 48, 48)
    assert imgs["image"].values.tolist() == ["china.jpg", "flower.jpg"]
    assert 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    # the two photos differ: a china temple is not a flower
    assert float(abs(imgs[0] - imgs[1]).mean()) > 0.1


def test_transform_is_applied_and_commutes_with_resizing() -> None:
    mean, std = torch.tensor([0.4, 0.5, 0.6])[:, None, None], 0.25
    raw = vision.sample_images(32)
    normalised = vision.sample_images(32, lambda x: (x - mean) / std)
    # resizing is linear, so normalising before it equals normalising after (float32 rounding)
    expected = (raw - mean.numpy()) / std
    np.testing.assert_allclose(normalised.values, expected.values, atol=1e-5)
    assert "lambda" in normalised.attrs["transform"]


def test_weights_transform_gives_imagenet_inputs() -> None:
    transform = tv.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    imgs = vision.sample_images(None, transform)
    assert imgs.shape == (2, 3, 224, 224)  # the preset's centre crop
    assert float(imgs.min()) < 0  # normalised with ImageNet's mean and std


def test_image_segment_and_ray() -> None:
    imgs = vision.sample_images(16)
    path = vision.image_segment(n=5, size=16)
    np.testing.assert_array_equal(path[0].values, imgs[0].values)
    np.testing.assert_array_equal(path[-1].values, imgs[1].values)
    ray = vision.image_ray(n=5, size=16, image="flower.jpg", seed=0)
    np.testing.assert_allclose(ray[2].values, imgs[1].values)
    half = np.linalg.norm(imgs[0].values - imgs[1].values) / 2
    np.testing.assert_allclose(np.linalg.norm(ray[-1].values - ray[0].values), 2 * half)
    with pytest.raises(ValueError, match=r"The 'image' parameter of image_ray must be 0, 1"):
        vision.image_ray(image="cat.jpg")


# -- real architectures ---------------------------------------------------------------------------

#: probed layers, and how many rectifier calls lie between each layer's output and the logit
PROFILE_LAYERS = {
    # the stem's ReLU, then the output of each BasicBlock (two rectifier calls per block)
    "resnet18": (
        ["relu"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)],
        [16, 14, 12, 10, 8, 6, 4, 2, 0],
        17,
    ),
    # every ReLU module: 8 after the convolutions (each after a BN), 2 in the classifier
    "vgg11_bn": (
        [f"features.{i}" for i in (2, 6, 10, 13, 17, 20, 24, 27)]
        + ["classifier.1", "classifier.4"],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        10,
    ),
}


@pytest.fixture(scope="module")
def profiles(resnet18: torch.nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Shattering index at init against the rectifier calls above each layer, per architecture."""
    path = vision.image_segment(n=32, size=64)
    out = {}
    for name, (layers, above, total) in PROFILE_LAYERS.items():
        model = resnet18 if name == "resnet18" else vision.load(name, seed=0)[0]
        grads = GradientProbe(model, layers=layers, output=0).fit_transform(path)
        profile = metrics.shattering_profile(grads)
        assert profile["layer"].values.tolist() == ["input", *layers]
        out[name] = (np.array([total, *above]), profile["shattering_index"].values)
    return out


def test_profile_rises_with_the_rectifiers_above(profiles) -> None:
    for above, index in profiles.values():
        # the layer feeding the linear head: its gradient is constant along the path
        assert index[above == 0] == pytest.approx(0.0, abs=1e-6)
        # deeper from the logit, more shattered (0.01: seed-to-seed spread is ~0.003)
        assert np.all(np.diff(index[::-1]) > -0.01)


def test_network_without_skips_shatters_faster_per_rectifier(profiles) -> None:
    slopes = {}
    for name, (above, index) in profiles.items():
        keep = above > 0
        slopes[name] = np.polyfit(above[keep], index[keep], 1)[0]
    # measured at seed 0: vgg11_bn ~0.026, resnet18 ~0.014 per rectifier call (1.9x)
    assert slopes["vgg11_bn"] > 1.5 * slopes["resnet18"] > 0


def test_activation_probe_sees_every_resnet18_rectifier_call(resnet18: torch.nn.Module) -> None:
    imgs = vision.image_segment(n=4, size=32)
    pat = ActivationProbe(resnet18, packed=True).fit_transform(imgs)
    blocks = [f"layer{i}.{j}.relu" for i in range(1, 5) for j in range(2)]
    expected = ["relu"] + [name for b in blocks for name in (b, f"{b}#1")]
    layers = list(dict.fromkeys(pat["layer"].values.tolist()))
    assert layers == expected and len(layers) == 17
    depths = list(dict.fromkeys(pat["depth"].values.tolist()))
    assert depths == list(range(1, 18))
    # units per call at 32x32: stem 64 x 16 x 16, then 64, 128, 256, 512 channels halving in size
    sizes = [int((pat["layer"] == name).sum()) for name in expected]
    assert sizes == [16384] + [64 * 8 * 8] * 4 + [128 * 4 * 4] * 4 + [256 * 2 * 2] * 4 + [512] * 4
