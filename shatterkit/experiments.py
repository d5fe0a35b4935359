"""Experiments on networks trained here, in seconds to minutes on a CPU.

Two questions beyond the paper's random networks, on scikit-learn's digits (8 × 8 images, 1797
of them, shipped with scikit-learn so nothing is downloaded):

* What does training do to shattering? :func:`train_digits_cnn` trains a small CNN and keeps its
  untrained twin; :func:`training_comparison` measures both along a path between two digits.
* Does the looks-linear initialisation let a deep network without skip connections train
  (the paper's last section)? :func:`trainability` trains plain He-initialised rectifier MLPs,
  looks-linear CReLU MLPs and resnets of the same depth, recording loss, accuracy and the
  shattering index during training; :func:`plot_trainability` draws the curves.
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from matplotlib.axes import Axes
from torch import nn
from torch.nn import functional as F

from shatterkit import inputs, metrics, models
from shatterkit._dims import DEPTH, LAYER, SAMPLE, param_error
from shatterkit.probes import activation_patterns, input_gradients

__all__ = [
    "digits",
    "digit_path",
    "digits_cnn",
    "train_digits_cnn",
    "accuracy",
    "training_comparison",
    "trainability",
    "plot_trainability",
]

ARCHITECTURES = ("feedforward", "looks_linear", "resnet")
_SPLITS = ("all", "train", "test")


# -- data -----------------------------------------------------------------------------------------


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images / 16.0
    # One scalar mean and std over every pixel of the data set: inputs of zero mean and unit
    # variance suit He initialisation, and blank corner pixels stay constant instead of dividing
    # by a zero per-pixel std.
    return (x - x.mean()) / x.std(), bunch.target


def digits(
    split: str = "all", *, flatten: bool = False, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load scikit-learn's digits as float32 tensors, standardised, with a seeded stratified split.

    The data ship with scikit-learn (1797 images of 8 × 8 pixels, 10 classes), so nothing is
    downloaded.

    Parameters
    ----------
    split : {"all", "train", "test"}
        The whole set (1797 images), or the 75 % / 25 % stratified split drawn with ``seed``.
    flatten : bool
        Images as 64-d vectors ``(n, 64)`` instead of ``(n, 1, 8, 8)``.
    seed : int
        Seed of the split.

    Returns
    -------
    X : torch.Tensor
        Float32 images ``(n, 1, 8, 8)`` or vectors ``(n, 64)``; pixels ``/ 16`` then
        standardised by the mean and standard deviation over all pixels of the data set.
    y : torch.Tensor
        Integer (int64) class labels ``(n,)``.

    See Also
    --------
    digit_path : A path between two digits.

    Examples
    --------
    >>> from shatterkit.experiments import digits
    >>> X, y = digits("train", flatten=True)
    >>> tuple(X.shape), tuple(y.shape), X.dtype
    ((1347, 64), (1347,), torch.float32)
    """
    if split not in _SPLITS:
        raise param_error("split", "digits", f"one of {_SPLITS}", split)
    x, y = _raw_digits()
    if split != "all":
        from sklearn.model_selection import train_test_split

        parts = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
        x, y = (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
    X = torch.tensor(x, dtype=torch.float32)
    X = X.reshape(len(X), 64) if flatten else X.reshape(len(X), 1, 8, 8)
    return X, torch.tensor(y, dtype=torch.int64)


def digit_path(
    n: int = 128, *, start: int = 3, end: int = 8, flatten: bool = False
) -> xr.DataArray:
    """Build the straight path from the first digit ``start`` to the first digit ``end`` of the set.

    The end images are the first of their class in :func:`digits` (whole set, preprocessed), so
    the path is the same for every split seed.

    Parameters
    ----------
    n : int, default 128
        Number of points, ends included.
    start, end : int, default 3 and 8
        The classes of the two end images (0–9).
    flatten : bool
        64-d vectors (dims ``sample, feature``) instead of images ``(sample, channel, height,
        width)``.

    Returns
    -------
    xarray.DataArray
        The :func:`shatterkit.inputs.segment` between the two digits; coord ``t`` in
        ``[0, 1]``; attrs ``start`` and ``end`` (the classes).

    See Also
    --------
    digits : The data set.
    training_comparison : Uses this path by default.

    Examples
    --------
    >>> from shatterkit.experiments import digit_path
    >>> path = digit_path(5, flatten=True)
    >>> path.dims, path.shape, path.attrs["end"]
    (('sample', 'feature'), (5, 64), 8)
    """
    for name, value in (("start", start), ("end", end)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not 0 <= value < 10
        ):
            raise param_error(name, "digit_path", "a digit class, an int in [0, 9]", value)
    X, y = digits()
    a, b = X[y == start][0], X[y == end][0]
    if flatten:
        a, b = a.reshape(64), b.reshape(64)
    path = inputs.segment(a, b, n=n)
    return path.assign_attrs(start=int(start), end=int(end))


# -- the small CNN, trained and untrained ---------------------------------------------------------


def digits_cnn(seed: int | None = None) -> nn.Sequential:
    """A small rectifier CNN for 8 × 8 digits with PyTorch's default initialisation, seeded.

    ``conv1`` (1 → 16, 3 × 3) → ``relu1`` → ``conv2`` (16 → 32, 3 × 3, stride 2, to 4 × 4) →
    ``relu2`` → ``flatten`` → ``fc`` (512 → 64) → ``relu3`` → ``readout`` (64 → 10 logits).

    Parameters
    ----------
    seed : int, optional
        Seeds the initialisation; the global torch RNG is left as it was. None: fresh entropy.

    Returns
    -------
    torch.nn.Sequential
        The network, with named children as above (three ``nn.ReLU`` modules, each called once).

    See Also
    --------
    train_digits_cnn : Train it on the digits.

    Examples
    --------
    >>> import torch
    >>> from shatterkit.experiments import digits_cnn
    >>> digits_cnn(seed=0)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    with torch.random.fork_rng(devices=[]):
        if seed is None:
            torch.seed()
        else:
            torch.manual_seed(seed)
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 16, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(16, 32, 3, stride=2, padding=1),
                relu2=nn.ReLU(),
                flatten=nn.Flatten(),
                fc=nn.Linear(32 * 4 * 4, 64),
                relu3=nn.ReLU(),
                readout=nn.Linear(64, 10),
            )
        )


def _fit(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    callback: Callable[[int], bool] | None = None,
) -> None:
    """Adam on cross-entropy with minibatches drawn by a seeded generator.

    ``callback(step)`` runs before step 0 and after every step; training stops when it returns
    False (e.g. when the loss is no longer finite).
    """
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    if callback is not None and not callback(0):
        return
    for step in range(1, steps + 1):
        batch = torch.randint(0, len(X), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(X[batch]), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if callback is not None and not callback(step):
            return
    model.eval()


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Compute the fraction of samples whose largest logit is the label.

    The model runs in eval mode without gradients; its train/eval flag is restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(n, classes)``.
    X, y : torch.Tensor
        Inputs and integer labels.

    Returns
    -------
    float
        The accuracy, in ``[0, 1]``.

    See Also
    --------
    digits : Inputs and labels.

    Examples
    --------
    >>> import torch
    >>> from shatterkit.experiments import accuracy
    >>> accuracy(torch.nn.Identity(), torch.eye(3), torch.tensor([0, 1, 0]))
    0.6666666666666666
    """
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float((model(X).argmax(1) == y).double().mean())
    finally:
        model.train(training)


def train_digits_cnn(
    *, steps: int = 300, lr: float = 3e-3, batch_size: int = 64, seed: int = 0
) -> tuple[nn.Sequential, nn.Sequential]:
    """Train :func:`digits_cnn` on the digits' training split; return it and its untrained twin.

    The twin is a copy taken before the first step, so the two networks differ only by training:
    comparing them isolates what training did.

    Parameters
    ----------
    steps : int, default 300
        Adam steps on minibatches of ``batch_size`` (300 × 64 is about 14 epochs; a few seconds
        on one CPU core).
    lr : float, default 3e-3
        Adam's learning rate.
    batch_size : int, default 64
        Minibatch size.
    seed : int, default 0
        Seeds the initialisation, the split (:func:`digits`) and the minibatches; the global
        torch RNG is left as it was.

    Returns
    -------
    trained : torch.nn.Sequential
        The trained network, in eval mode.
    untrained : torch.nn.Sequential
        A copy of it taken before training, in eval mode.

    See Also
    --------
    training_comparison : Shattering before and after training.

    Examples
    --------
    >>> from shatterkit.experiments import accuracy, digits, train_digits_cnn
    >>> trained, untrained = train_digits_cnn(steps=60, seed=0)
    >>> X, y = digits("test")
    >>> accuracy(trained, X, y) > 0.8 > accuracy(untrained, X, y)
    True
    """
    model = digits_cnn(seed)
    untrained = copy.deepcopy(model).eval()
    X, y = digits("train", seed=seed)
    _fit(model, X, y, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    return model.eval(), untrained


def _rectifier_modules(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]


def training_comparison(
    trained: nn.Module,
    untrained: nn.Module,
    path: xr.DataArray | None = None,
    *,
    output: int | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Measure gradients, shattering profile, co-activation and dispersion before and after training.

    Both networks are probed on the same path, with the gradient of the same logit taken with
    respect to the input and to each rectifier's output, and their activation patterns recorded.

    Parameters
    ----------
    trained, untrained : torch.nn.Module
        The same architecture after and before training (e.g. from :func:`train_digits_cnn`).
        Every ``nn.ReLU`` module must be called once per forward.
    path : xarray.DataArray, optional
        Inputs along a path; default :func:`digit_path` (a 3 turning into an 8, 128 points).
    output : int, optional
        The logit differentiated; default the class at the end of the path (``path.attrs["end"]``).
    seed : int, default 0
        Seed of the digits' test split on which ``accuracy`` is measured.

    Returns
    -------
    xarray.Dataset
        Over ``training`` (``"untrained"``, ``"trained"``): ``gradient`` (the input gradient
        along the path, dims ``training, sample, *input dims``), ``output``; over ``training,
        layer`` (coord ``depth``; ``layer="input"`` is the input gradient): ``shattering_index``
        and ``autocorrelation_lag1`` of the gradient w.r.t. each rectifier's output
        (:func:`shatterkit.metrics.shattering_profile`), ``coactivation`` (over all pairs of
        the path), ``dispersion`` (over all pairs) and ``dispersion_lag1`` (neighbours on the
        path: how often patterns change from one point to the next); ``accuracy`` on the digits'
        test split when the models take digits.

    See Also
    --------
    train_digits_cnn : The trained network and its twin.

    Examples
    --------
    >>> from shatterkit.experiments import digits_cnn, training_comparison
    >>> a, b = digits_cnn(seed=0), digits_cnn(seed=1)
    >>> ds = training_comparison(a, b)
    >>> ds["shattering_index"].dims, ds["training"].values.tolist()
    (('training', 'layer'), ['untrained', 'trained'])
    """
    path = digit_path() if path is None else path
    if output is None:
        if "end" not in path.attrs:
            raise param_error(
                "output",
                "training_comparison",
                "an int (the logit) for a path without attrs['end']",
                output,
            )
        output = int(path.attrs["end"])
    results = []
    for model in (untrained, trained):
        layers = _rectifier_modules(model)
        grads = input_gradients(model, path, output=output, layers=layers)
        profile = metrics.shattering_profile(grads)
        pattern = activation_patterns(model, path)
        per_layer = xr.Dataset(
            {
                "coactivation": metrics.coactivation_rate(pattern),
                "dispersion": metrics.pattern_dispersion(pattern),
                "dispersion_lag1": metrics.pattern_dispersion(pattern, max_lag=1)
                .sel(lag=1, drop=True)
                .assign_attrs(long_name="pattern dispersion between neighbours on the path"),
            }
        )
        merged = xr.merge(
            [
                profile[["shattering_index", "autocorrelation_lag1"]],
                per_layer.drop_vars(DEPTH),
                grads[["gradient", "output"]],
            ],
            join="outer",
            compat="override",
        )
        shape = tuple(path.shape[1:])
        if shape in ((1, 8, 8), (64,)):
            X, y = digits("test", flatten=shape == (64,), seed=seed)
            merged["accuracy"] = xr.DataArray(
                accuracy(model, X, y), attrs={"long_name": "test accuracy", "units": "1"}
            )
        results.append(merged)
    out = xr.concat(results, dim="training", join="outer", coords="minimal", compat="override")
    out = out.assign_coords(training=["untrained", "trained"])
    order = out[DEPTH].values.argsort(kind="stable")
    out = out.isel({LAYER: order})
    out.attrs = {
        "output": f"logit {output}",
        "path": f"digit {path.attrs.get('start', '?')} to digit {path.attrs.get('end', '?')}",
        "n_samples": int(path.sizes[SAMPLE]),
        "history": "shatterkit.experiments.training_comparison",
    }
    return out


# -- looks-linear trainability --------------------------------------------------------------------


def _build(architecture: str, depth: int, width: int, seed: int) -> nn.Module:
    kwargs: dict[str, Any] = {"in_features": 64, "out_features": 10, "seed": seed}
    if architecture == "feedforward":
        return models.feedforward(depth, width, **kwargs)
    if architecture == "looks_linear":
        return models.looks_linear(depth, width, **kwargs)
    # beta = 1/sqrt(depth) keeps the skip path's variance bounded (it grows by (1 + beta^2) per
    # block without BN: 2^depth at beta = 1) and the correlations bounded away from 0.
    return models.resnet(depth, width, beta=1 / math.sqrt(depth), **kwargs)


def _shattering(model: nn.Module, path: xr.DataArray) -> float:
    grads = input_gradients(model, path, output=int(path.attrs["end"]))
    if grads.attrs.get("n_nonfinite", 0):
        return math.nan
    return float(metrics.shattering_index(grads)["shattering_index"])


def trainability(
    depths: Sequence[int] = (50, 100),
    *,
    architectures: Sequence[str] = ARCHITECTURES,
    steps: int | None = None,
    width: int = 64,
    lr: float = 1e-3,
    batch_size: int = 128,
    n_evals: int = 11,
    quick: bool = False,
    seed: int = 0,
) -> xr.Dataset:
    """Train deep rectifier MLPs on the digits: plain He init, looks-linear CReLU, resnet.

    Every network reads the flattened 64-d digits and has ``depth`` rectifier layers of
    ``width`` units, no bias and no normalisation; they differ only in architecture and
    initialisation:

    * ``"feedforward"``: :func:`shatterkit.models.feedforward`, He init N(0, 2 / fan_in).
    * ``"looks_linear"``: :func:`shatterkit.models.looks_linear`, CReLU layers with mirrored
      orthogonal weights ``[W, -W]``: a linear map at initialisation.
    * ``"resnet"``: :func:`shatterkit.models.resnet`, ``depth`` blocks with one rectifier each
      and branch scale ``beta = 1 / sqrt(depth)``.

    Each is trained with Adam on cross-entropy (minibatches drawn with ``seed``); ``n_evals``
    times, evenly spaced from step 0 to ``steps``, the loss and accuracy on the whole training
    split, the test accuracy and the shattering index of the input gradient along
    :func:`digit_path` (128 points from a 3 to an 8, logit 8) are recorded.

    Parameters
    ----------
    depths : sequence of int, default (50, 100)
        Numbers of rectifier layers (residual blocks for the resnet).
    architectures : sequence of str
        A subset of ``("feedforward", "looks_linear", "resnet")``.
    steps : int, optional
        Adam steps per network; default 1500, or 150 with ``quick``.
    width : int, default 64
        Units per layer (before CReLU's doubling in the looks-linear nets).
    lr : float, default 1e-3
        Adam's learning rate.
    batch_size : int, default 128
        Minibatch size.
    n_evals : int, default 11
        Number of evaluation steps, including step 0 and the last; 6 with ``quick``.
    quick : bool
        The short setting used by the tests (< 1 minute on 2 CPU cores for the defaults).
    seed : int, default 0
        Seeds the weights, the split and the minibatches; the global torch RNG is not used.

    Returns
    -------
    xarray.Dataset
        Dims ``architecture``, ``depth``, ``step``: ``loss``, ``train_accuracy``,
        ``test_accuracy``, ``shattering_index`` (NaN after a non-finite loss); dims
        ``architecture``, ``depth``: ``seconds`` (wall time of training and evaluation).
        attrs record the setting.

    See Also
    --------
    plot_trainability : The curves.

    Notes
    -----
    Balduzzi et al. (ICML 2017, arXiv:1702.08591, last section) train ~200-layer CReLU nets
    with looks-linear initialisation and no skips on CIFAR-10 and report that they train about
    as well as resnets while plain He-initialised nets degrade with depth. This is the same
    comparison at CPU scale.

    Examples
    --------
    >>> from shatterkit.experiments import trainability
    >>> ds = trainability((4,), steps=10, n_evals=2, architectures=("looks_linear",))
    >>> ds["test_accuracy"].dims, ds["step"].values.tolist()
    (('architecture', 'depth', 'step'), [0, 10])
    >>> float(ds["shattering_index"].sel(step=0).item())  # linear at init: nothing shattered
    0.0
    """
    caller = "trainability"
    depths = [int(d) for d in np.atleast_1d(depths)]
    if not depths or any(d < 1 for d in depths):
        raise param_error("depths", caller, "a non-empty sequence of ints >= 1", depths)
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if unknown or not architectures:
        raise param_error(
            "architectures", caller, f"a non-empty subset of {ARCHITECTURES}", list(architectures)
        )
    steps = (150 if quick else 1500) if steps is None else steps
    n_evals = 6 if quick and n_evals == 11 else n_evals
    if steps < 1 or n_evals < 2:
        raise param_error("steps", caller, "an int >= 1 (with n_evals >= 2)", steps)
    eval_steps = np.unique(np.linspace(0, steps, n_evals).round().astype(int))
    X, y = digits("train", flatten=True, seed=seed)
    X_test, y_test = digits("test", flatten=True, seed=seed)
    path = digit_path(128, flatten=True)
    names = ("loss", "train_accuracy", "test_accuracy", "shattering_index")
    shape = (len(architectures), len(depths), len(eval_steps))
    records = {name: np.full(shape, np.nan) for name in names}
    seconds = np.full(shape[:2], np.nan)
    for i, arch in enumerate(architectures):
        for j, depth in enumerate(depths):
            model = _build(arch, depth, width, seed)
            start = time.perf_counter()

            def evaluate(step: int, model: nn.Module = model, i: int = i, j: int = j) -> bool:
                if step not in eval_steps:
                    return True
                k = int(np.searchsorted(eval_steps, step))
                with torch.no_grad():
                    loss = float(F.cross_entropy(model(X), y))
                if not math.isfinite(loss):
                    return False
                records["loss"][i, j, k] = loss
                records["train_accuracy"][i, j, k] = accuracy(model, X, y)
                records["test_accuracy"][i, j, k] = accuracy(model, X_test, y_test)
                records["shattering_index"][i, j, k] = _shattering(model, path)
                return True

            _fit(
                model, X, y, steps=steps, lr=lr, batch_size=batch_size, seed=seed, callback=evaluate
            )
            seconds[i, j] = time.perf_counter() - start
    attrs = {
        "loss": {"long_name": "training loss (cross-entropy)", "units": "nats"},
        "train_accuracy": {"long_name": "training accuracy", "units": "1"},
        "test_accuracy": {"long_name": "test accuracy", "units": "1"},
        "shattering_index": {"long_name": "shattering index 1 - rho(1)", "units": "1"},
    }
    dims = ("architecture", DEPTH, "step")
    ds = xr.Dataset(
        {name: (dims, records[name], attrs[name]) for name in names},
        coords={"architecture": list(architectures), DEPTH: depths, "step": eval_steps},
    )
    ds["seconds"] = (dims[:2], seconds, {"long_name": "wall time", "units": "s"})
    ds[DEPTH].attrs = {"long_name": "rectifier layers", "units": "1"}
    ds["step"].attrs = {"long_name": "Adam step", "units": "1"}
    ds.attrs = {
        "data": "sklearn digits, flattened (64-d), standardised; stratified 75/25 split",
        "optimizer": "Adam",
        "lr": lr,
        "batch_size": batch_size,
        "width": width,
        "steps": steps,
        "seed": seed,
        "quick": int(quick),
        "resnet_beta": "1/sqrt(depth)",
        "shattering_path": "128 points from the first 3 to the first 8 of the digits, logit 8",
        "history": f"shatterkit.experiments.trainability(depths={depths}, steps={steps}, quick={quick})",
    }
    return ds


def plot_trainability(
    ds: xr.Dataset,
    *,
    var: str = "test_accuracy",
    ax: Axes | None = None,
    palette: Any = None,
    **kwargs: Any,
) -> Axes:
    """Plot one :func:`trainability` variable against the step: colour per architecture, style per depth.

    Lines are labelled ``"<architecture>, depth <depth>"`` and the axes from the variables' attrs.

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`trainability`.
    var : str, default "test_accuracy"
        Which curve: ``"loss"``, ``"train_accuracy"``, ``"test_accuracy"`` or
        ``"shattering_index"``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; the current Axes by default.
    palette : seaborn palette, optional
        Colours of the architectures.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on, labelled from the data's attrs, with a legend.

    See Also
    --------
    trainability : The data.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from shatterkit.experiments import plot_trainability
    >>> ds = xr.Dataset(
    ...     {"test_accuracy": (("architecture", "depth", "step"), np.random.rand(2, 1, 3))},
    ...     coords={"architecture": ["feedforward", "resnet"], "depth": [50], "step": [0, 5, 10]})
    >>> ax = plot_trainability(ds)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['feedforward, depth 50', 'resnet, depth 50']
    """
    import seaborn as sns

    from shatterkit.plot._common import get_ax, label

    if not isinstance(ds, xr.Dataset) or var not in ds:
        raise param_error("ds", "plot_trainability", f"a trainability Dataset with {var!r}", ds)
    ax = get_ax(ax)
    da = ds[var]
    colours = sns.color_palette(palette, ds.sizes["architecture"])
    styles = ["-", "--", ":", "-."]
    for i, arch in enumerate(ds["architecture"].values.tolist()):
        for j, depth in enumerate(ds[DEPTH].values.tolist()):
            curve = da.sel(architecture=arch, depth=depth)
            line_kws = {"color": colours[i], "ls": styles[j % len(styles)], "marker": "o", "ms": 3}
            ax.plot(
                ds["step"].values,
                curve.values,
                label=f"{arch}, depth {depth}",
                **{**line_kws, **kwargs},
            )
    ax.set_xlabel(label(ds["step"], "step"))
    ax.set_ylabel(label(da, var))
    ax.legend()
    return ax
