"""torchvision models offline, and image input sets built from photos shipped with scikit-learn.

:func:`load` builds any ``torchvision.models.get_model`` network with random (seeded) weights,
torchvision's named weights read from the torch hub cache, or a state dict on disk, and returns the
weights' preprocessing transform with it. :func:`sample_images`, :func:`image_segment` and
:func:`image_ray` turn scikit-learn's two sample photos (``china.jpg``, ``flower.jpg``) into input
sets for the probes. torchvision is imported only by :func:`load` (the ``vision`` extra).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

from shatterkit import inputs
from shatterkit._dims import SAMPLE, param_error

__all__ = ["load", "sample_images", "image_segment", "image_ray"]

#: the photos of :func:`sklearn.datasets.load_sample_images`, in its order
SAMPLE_IMAGE_NAMES = ("china.jpg", "flower.jpg")


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as err:
        raise ImportError(
            "shatterkit.vision.load needs torchvision, which is not installed. "
            "Install the vision extra: pip install shatterkit[vision]"
        ) from err
    return torchvision


@contextlib.contextmanager
def _hub_dir(hub_dir: str | os.PathLike[str] | None) -> Iterator[str]:
    """Point ``torch.hub`` at ``hub_dir`` for the duration, then restore the previous setting."""
    if hub_dir is None:
        yield torch.hub.get_dir()
        return
    # torch.hub keeps an explicit set_dir() choice in a module global; None means "from TORCH_HOME".
    previous = getattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(os.fspath(hub_dir))
    try:
        yield torch.hub.get_dir()
    finally:
        torch.hub._hub_dir = previous  # type: ignore[attr-defined]


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run with the CPU torch RNG seeded by ``seed`` (fresh entropy if None), restoring it after."""
    with torch.random.fork_rng(devices=[]):
        if seed is None:
            torch.seed()
        else:
            torch.manual_seed(seed)
        yield


def _resolve_weights(tv: Any, name: str, weights: Any) -> Any:
    """The torchvision ``WeightsEnum`` member named by ``weights``, or None for a state-dict file."""
    if isinstance(weights, tv.models.WeightsEnum):
        return weights
    weights = os.fspath(weights)
    try:
        enum = tv.models.get_model_weights(name)
    except (ValueError, KeyError):  # a builder without named weights
        enum = None
    available = [] if enum is None else ["DEFAULT", *(w.name for w in enum)]
    key = weights if enum is None else weights.removeprefix(f"{enum.__name__}.")
    if key == "DEFAULT" and enum is not None:
        return enum.DEFAULT
    if key in available:
        return enum[key]
    if os.path.isfile(weights):
        return None
    close = difflib.get_close_matches(key, available, n=3, cutoff=0.4)
    hint = f" Close matches: {', '.join(map(repr, close))}." if close else ""
    raise ValueError(
        f"The 'weights' parameter of load must be None, a weights name of {name!r} "
        f"({', '.join(map(repr, available)) or 'it has none'}) or the path of a state dict. "
        f"Got {weights!r} instead, which is neither a name nor an existing file.{hint}"
    )


def _expected_file(tv_weights: Any, hub: str) -> tuple[str, str]:
    """Directory and file name where ``torch.hub`` looks for ``tv_weights``."""
    return os.path.join(hub, "checkpoints"), os.path.basename(urlparse(tv_weights.url).path)


def _read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    # Training checkpoints often wrap the weights: {"state_dict": {...}, "epoch": ...}.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(
            f"The 'weights' parameter of load must name a file holding a state dict. "
            f"Got {os.fspath(path)!r}, which holds a {type(state).__name__}."
        )
    return state


def load(
    name: str,
    weights: Any = None,
    *,
    seed: int | None = None,
    hub_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, Callable[..., Any] | None]:
    """Build a torchvision model, offline: random, torchvision's named weights, or a state dict.

    Named weights are read from the torch hub cache by torchvision's own loader, so a machine
    without network access works once the file is in place; the error says where it belongs.

    Parameters
    ----------
    name : str
        Any name of :func:`torchvision.models.list_models`, e.g. ``"resnet18"``, ``"vgg11_bn"``.
    weights : None, str, torchvision WeightsEnum or path-like
        ``None``: random initialisation (torchvision's own scheme). A weights name of this model
        (``"DEFAULT"``, ``"IMAGENET1K_V1"``, or ``"ResNet18_Weights.IMAGENET1K_V1"``) or a
        ``WeightsEnum`` member: loaded through torchvision's own builder, which reads
        ``<hub_dir>/checkpoints/<file>`` (the torch hub cache) when it is there. A path: a state
        dict saved with :func:`torch.save` (optionally under a ``"state_dict"`` or ``"model"``
        key), loaded strictly into the randomly initialised model.
    seed : int, optional
        Seeds the random initialisation (the part of the model a state dict does not overwrite).
        The global torch RNG is left as it was; None draws fresh entropy.
    hub_dir : str or path-like, optional
        The torch hub directory whose ``checkpoints/`` holds named weights; default
        :func:`torch.hub.get_dir` (``$TORCH_HOME/hub``, ``~/.cache/torch/hub`` when unset).
    **kwargs
        Passed to the model builder (e.g. ``num_classes`` without named weights).

    Returns
    -------
    model : torch.nn.Module
        The network, in eval mode (the probes choose their batch statistics explicitly anyway).
    transform : callable or None
        The named weights' preprocessing (``weights.transforms()``: resize, crop, normalise), to
        pass to :func:`sample_images`; None for random or path weights.

    Raises
    ------
    ImportError
        If torchvision is not installed.
    ValueError
        If ``name`` or ``weights`` is unknown, or a state dict does not fit the model.
    FileNotFoundError
        If named weights are not in the hub cache and cannot be downloaded; the message says
        which file to put in which directory.

    See Also
    --------
    sample_images : Image inputs, preprocessed by the returned transform.

    Notes
    -----
    Named weights go through ``torchvision.models.get_model(name, weights=...)``, the code path
    torchvision users rely on, which calls :func:`torch.hub.load_state_dict_from_url`: a file
    already in the cache is read, not downloaded. On a machine without network access, copy the
    file (its name is the last part of ``weights.url``, e.g. ``resnet18-f37072fd.pth``) into the
    ``checkpoints`` directory named in the error.

    Examples
    --------
    >>> import pytest; tv = pytest.importorskip("torchvision")
    >>> from shatterkit import vision
    >>> model, transform = vision.load("resnet18", seed=0)
    >>> type(model).__name__, transform is None, model.training
    ('ResNet', True, False)
    """
    tv = _torchvision()
    available = tv.models.list_models()
    if not isinstance(name, str) or name not in available:
        close = difflib.get_close_matches(str(name), available, n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
        raise ValueError(
            f"The 'name' parameter of load must be a torchvision model name "
            f"(torchvision.models.list_models()). Got {name!r} instead{hint}."
        )
    if weights is not None and not isinstance(weights, (str, os.PathLike, tv.models.WeightsEnum)):
        expected = "None, a weights name or a path to a state dict"
        raise param_error("weights", "load", expected, weights, exc=TypeError)
    named = None if weights is None else _resolve_weights(tv, name, weights)
    with _seeded(seed), _hub_dir(hub_dir) as hub:
        if named is None:
            model = tv.models.get_model(name, weights=None, **kwargs)
        else:
            model = _load_named(tv, name, named, hub, kwargs)
    if weights is not None and named is None:
        try:
            model.load_state_dict(_read_state_dict(weights))
        except RuntimeError as err:
            raise ValueError(
                f"The state dict in {os.fspath(weights)!r} does not fit torchvision's {name!r}: "
                f"{err}"
            ) from err
    model.eval()
    return model, (named.transforms() if named is not None else None)


def _load_named(tv: Any, name: str, named: Any, hub: str, kwargs: dict[str, Any]) -> nn.Module:
    directory, filename = _expected_file(named, hub)
    present = os.path.exists(os.path.join(directory, filename))
    try:
        return tv.models.get_model(name, weights=named, progress=False, **kwargs)
    except OSError as err:  # urllib's URLError, socket errors and timeouts are OSErrors
        if present:
            raise
        raise FileNotFoundError(
            f"The weights {named} of {name!r} are not in the torch hub cache and could not be "
            f"downloaded ({type(err).__name__}: {err}). Put the file {filename!r} (from "
            f"{named.url}) in the directory {directory!r}, or point TORCH_HOME (or hub_dir=) at "
            "a directory whose 'hub/checkpoints' (or, for hub_dir, 'checkpoints') holds it."
        ) from err


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The decoded sample photos (uint8, height × width × 3), read-only and decoded once."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    for image in bunch.images:
        image.flags.writeable = False
    return tuple(os.path.basename(f) for f in bunch.filenames), tuple(bunch.images)


def _fit(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize ``image`` (C, H, W) so its shorter side is ``size``, then centre-crop a square."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    resized = F.interpolate(
        image[None], size=new, mode="bilinear", antialias=True, align_corners=False
    )[0]
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return resized[:, top : top + size, left : left + size]


def sample_images(
    size: int | None = 224, transform: Callable[[torch.Tensor], Any] | None = None
) -> xr.DataArray:
    """Load scikit-learn's two sample photos as an input set: ``china.jpg`` and ``flower.jpg``.

    Each photo (427 × 640 RGB) becomes a float tensor ``(3, H, W)`` with values in ``[0, 1]``;
    ``transform`` (e.g. the one returned by :func:`load`) is applied to it; then it is resized so
    its shorter side is ``size`` and centre-cropped to ``size × size``.

    Parameters
    ----------
    size : int or None, default 224
        Side of the square output images; None keeps the size that ``transform`` produces (both
        photos have the same size).
    transform : callable, optional
        Maps a float image tensor ``(3, H, W)`` in ``[0, 1]`` to a preprocessed image tensor,
        e.g. torchvision's ``ImageClassification`` preset (resize, crop, normalise). Resizing
        after it is linear, so it commutes with its per-channel normalisation.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, channel, height, width)``, float64, coord ``image`` (the file name) on
        ``sample``; attrs ``source`` and ``transform``.

    See Also
    --------
    image_segment : The path between the two photos.
    image_ray : A line through one photo.

    Examples
    --------
    >>> from shatterkit import vision
    >>> imgs = vision.sample_images(size=32)
    >>> imgs.dims, imgs.shape, imgs["image"].values.tolist()
    (('sample', 'channel', 'height', 'width'), (2, 3, 32, 32), ['china.jpg', 'flower.jpg'])
    >>> bool(imgs.min() >= 0) and bool(imgs.max() <= 1)
    True
    """
    if size is not None and (
        isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 1
    ):
        raise param_error("size", "sample_images", "None or an int >= 1", size)
    if transform is not None and not callable(transform):
        raise param_error(
            "transform", "sample_images", "None or a callable", transform, exc=TypeError
        )
    names, photos = _photos()
    images = []
    for photo in photos:
        x = torch.from_numpy(np.array(photo)).permute(2, 0, 1).to(torch.float32) / 255
        if transform is not None:
            out = transform(x)
            x = torch.as_tensor(out if isinstance(out, torch.Tensor) else np.asarray(out))
            x = x.to(torch.float32)
        images.append(_fit(x, None if size is None else int(size)))
    if len({tuple(x.shape) for x in images}) != 1:
        raise ValueError(
            "The 'transform' parameter of sample_images must give both photos the same shape "
            f"when size=None. Got shapes {[tuple(x.shape) for x in images]} instead; pass size=."
        )
    data = torch.stack(images).to(torch.float64).numpy()
    return xr.DataArray(
        data,
        dims=(SAMPLE, "channel", "height", "width"),
        coords={SAMPLE: np.arange(len(names)), "image": (SAMPLE, list(names))},
        name="input",
        attrs={
            "source": "sklearn.datasets.load_sample_images",
            "transform": "none" if transform is None else " ".join(repr(transform).split()),
        },
    )


def image_segment(
    n: int = 32, size: int | None = 224, transform: Callable[[torch.Tensor], Any] | None = None
) -> xr.DataArray:
    """Build the straight path from ``china.jpg`` to ``flower.jpg`` (:func:`shatterkit.inputs.segment`).

    Every point is a convex combination of the two photos of :func:`sample_images`, so a
    network's gradient along it shows how its feedback changes between two natural images.

    Parameters
    ----------
    n : int, default 32
        Number of images along the path, ends included.
    size : int or None, default 224
        Side of the images, see :func:`sample_images`.
    transform : callable, optional
        Preprocessing applied to both photos first, see :func:`sample_images`.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, channel, height, width)``, coord ``t`` in ``[0, 1]`` (0: china, 1: flower).

    See Also
    --------
    image_ray : A line through one photo.

    Examples
    --------
    >>> from shatterkit import vision
    >>> path = vision.image_segment(n=5, size=16)
    >>> path.shape, path["t"].values.tolist()
    ((5, 3, 16, 16), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    photos = sample_images(size, transform)
    # Plain arrays: the photos' scalar coords (sample, image) must not label the path's points.
    return inputs.segment(photos.values[0], photos.values[1], n=n)


def image_ray(
    n: int = 32,
    size: int | None = 224,
    transform: Callable[[torch.Tensor], Any] | None = None,
    *,
    image: int | str = 0,
    radius: float | None = None,
    direction: Any = None,
    seed: Any = None,
) -> xr.DataArray:
    """Build a line through one sample photo (:func:`shatterkit.inputs.ray`).

    The line runs through the photo along a unit direction, random unless given, so it probes
    the network around one natural image rather than between two.

    Parameters
    ----------
    n : int, default 32
        Number of images along the line.
    size : int or None, default 224
        Side of the images, see :func:`sample_images`.
    transform : callable, optional
        Preprocessing applied to the photos first, see :func:`sample_images`.
    image : int or str, default 0
        The centre photo: its index or file name (``"china.jpg"``, ``"flower.jpg"``).
    radius : float, optional
        Half-length of the line, in input units (L2 norm); default half the distance between the
        two photos, so the ray is as long as :func:`image_segment`.
    direction : array-like, optional
        Direction of the line, shape ``(3, size, size)``; random (Gaussian) when omitted.
    seed : int or numpy.random.Generator, optional
        Seeds the random direction.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, channel, height, width)``, coord ``t`` in ``[-radius, radius]``.

    See Also
    --------
    image_segment : The path between the two photos.

    Examples
    --------
    >>> from shatterkit import vision
    >>> r = vision.image_ray(n=3, size=8, image="flower.jpg", radius=2.0, seed=0)
    >>> r.shape, r["t"].values.tolist()
    ((3, 3, 8, 8), [-2.0, 0.0, 2.0])
    """
    photos = sample_images(size, transform)
    names = photos["image"].values.tolist()
    if isinstance(image, str) and image in names:
        index = names.index(image)
    elif isinstance(image, (int, np.integer)) and not isinstance(image, bool) and 0 <= image < 2:
        index = int(image)
    else:
        raise param_error("image", "image_ray", f"0, 1 or one of {names}", image)
    if radius is None:
        radius = float(np.linalg.norm(photos[0].values - photos[1].values)) / 2
    return inputs.ray(photos.values[index], radius, n=n, direction=direction, seed=seed)
