"""Reproduce the paper's experiments: one function per experiment, and :func:`run` for all of them.

Balduzzi et al., *The Shattered Gradients Problem*, ICML 2017 (arXiv:1702.08591); the setup and
the predictions are restated in PAPER.md. Each experiment function builds the paper's networks
(:mod:`shatterkit.models`), probes them (:func:`shatterkit.input_gradients`,
:func:`shatterkit.activation_patterns`), reduces the results with :mod:`shatterkit.metrics` and
returns one labelled :class:`xarray.Dataset`:

* :func:`figure1`: gradients and gradient correlation matrices along the paper's 1-D grid for a
  1-layer and a 24-layer feedforward net, a 50-block resnet, brown and white noise;
* :func:`depth_sweep`: shattering index and autocorrelation against depth on the grid;
* :func:`decay`: gradient correlation of distinct inputs against depth in the theorems' regime,
  fitted with an exponential and a power law, beside :mod:`shatterkit.theory`;
* :func:`coactivation`: co-activation rate and pattern dispersion per layer;
* :func:`looks_linear`: the looks-linear net's gradients beside a feedforward net's.

:func:`run` calls all five, writes PNG figures, the Datasets as netCDF and ``report.md``, whose
table puts every measured number beside the paper's prediction and says where they disagree.

Networks without normalisation get biases on the 1-D grid: a bias-free rectifier net with a
scalar input is positively homogeneous, so its gradient takes only two values (PAPER.md, "The
paper's basic experiment"). Feedforward nets use :func:`shatterkit.models.feedforward`'s
``bias=True`` (N(0, 1) biases on every hidden layer); resnets, whose builder has no bias option,
get an N(0, 1) bias on their stem only, which is enough to put kinks along the grid. In the
theorems' regime (random high-dimensional inputs) no network has biases, as in the theorems.
"""

from __future__ import annotations

import importlib.util
import math
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import pandas as pd
import torch
import xarray as xr
from matplotlib.figure import Figure
from torch import nn

from shatterkit import inputs, metrics, models, noise, plot, theory
from shatterkit._dims import (
    DEPTH,
    FEATURE,
    GRADIENT,
    LAG,
    LAYER,
    MODEL,
    SAMPLE,
    UNIT,
    T,
    param_error,
    safe_attrs,
)
from shatterkit.probes import activation_patterns, input_gradients

__all__ = [
    "ARCHITECTURES",
    "Report",
    "coactivation",
    "decay",
    "depth_sweep",
    "figure1",
    "looks_linear",
    "run",
]

ARCH = "architecture"
PANEL = "panel"
REFERENCE = "reference"

#: an SI at or below this is "brown-like", at or above WHITE_LIKE "white-like" (report verdicts)
BROWN_LIKE = 0.1
WHITE_LIKE = 0.8
#: a measured number agrees with a prediction within this relative error or two standard errors
REL_TOL = 0.15

#: netCDF engine: h5netcdf (the io extra) when installed, else scipy's netCDF3 writer, which
#: scikit-learn's scipy dependency guarantees
NETCDF_ENGINE: Literal["h5netcdf", "scipy"] = (
    "h5netcdf" if importlib.util.find_spec("h5netcdf") else "scipy"
)


@dataclass(frozen=True)
class _Architecture:
    family: str  # "feedforward" or "resnet"
    norm: str  # "none", "centring" or "batchnorm"
    beta: float | None  # residual scale; None: 1 / sqrt(blocks)
    description: str


#: the networks the experiments compare, by the name used as ``architecture`` coordinate
ARCHITECTURES: dict[str, _Architecture] = {
    "feedforward": _Architecture("feedforward", "none", 1.0, "feedforward, no normalisation"),
    "feedforward_centring": _Architecture(
        "feedforward", "centring", 1.0, "feedforward, mean-centring before each ReLU"
    ),
    "feedforward_bn": _Architecture("feedforward", "batchnorm", 1.0, "feedforward, batch norm"),
    "resnet": _Architecture("resnet", "none", 1.0, "resnet, beta = 1, no normalisation"),
    "resnet_bn": _Architecture("resnet", "batchnorm", 1.0, "resnet, beta = 1, batch norm"),
    "resnet_bn_beta=0.1": _Architecture("resnet", "batchnorm", 0.1, "resnet, beta = 0.1, BN"),
    "resnet_bn_beta=1/sqrt(L)": _Architecture(
        "resnet", "batchnorm", None, "resnet, beta = 1/sqrt(L), BN"
    ),
}

_GRID_ARCHITECTURES = tuple(ARCHITECTURES)
_DECAY_ARCHITECTURES = (
    "feedforward",
    "feedforward_bn",
    "resnet",
    "resnet_bn",
    "resnet_bn_beta=0.1",
    "resnet_bn_beta=1/sqrt(L)",
)
_COACTIVATION_ARCHITECTURES = ("feedforward", "feedforward_bn", "resnet", "resnet_bn")

_DEPTH_ATTRS = {"long_name": "depth", "units": "hidden layers or residual blocks"}


# -- networks -------------------------------------------------------------------------------------


def _check_architectures(names: Any, allowed: Sequence[str], caller: str) -> tuple[str, ...]:
    expected = f"a sequence of names from {tuple(allowed)}"
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise param_error("architectures", caller, expected, names, exc=TypeError)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise param_error("architectures", caller, expected, names)
    return tuple(names)


def _check_depths(depths: Any, name: str, caller: str) -> tuple[int, ...]:
    expected = "a non-empty sequence of distinct ints >= 1"
    try:
        values = tuple(int(d) for d in depths)
    except (TypeError, ValueError):
        raise param_error(name, caller, expected, depths, exc=TypeError) from None
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise param_error(name, caller, expected, depths)
    return values


def _bias_generator(seed: int) -> torch.Generator:
    # A stream of its own: the model's generator is seeded with ``seed`` itself, and reusing it
    # would draw biases proportional to the stem weights (every kink at the same input).
    child = np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(child))


def _build(
    name: str, depth: int, *, width: int, in_features: int, biased: bool, seed: int
) -> nn.Module:
    """One network of architecture ``name`` with ``depth`` layers or blocks."""
    arch = ARCHITECTURES[name]
    biased = biased and arch.norm == "none"
    if arch.family == "feedforward":
        return models.feedforward(
            depth,
            width,
            in_features=in_features,
            batchnorm=arch.norm == "batchnorm",
            centering=arch.norm == "centring",
            bias=biased,
            seed=seed,
        )
    beta = 1 / math.sqrt(depth) if arch.beta is None else arch.beta
    net = models.resnet(
        depth,
        width,
        in_features=in_features,
        batchnorm=arch.norm == "batchnorm",
        beta=beta,
        seed=seed,
    )
    if biased:
        stem = cast(nn.Linear, net.get_submodule("stem"))
        bias = torch.randn(stem.weight.shape[0], generator=_bias_generator(seed))
        stem.bias = nn.Parameter(bias.to(stem.weight.dtype))
    return net


def _ensemble(
    name: str,
    depth: int,
    *,
    seeds: int,
    seed: int,
    width: int,
    in_features: int = 1,
    biased: bool = False,
) -> list[nn.Module]:
    factory = partial(_build, name, depth, width=width, in_features=in_features, biased=biased)
    return models.ensemble(factory, seeds, seed=seed)


def _gradient_summary(ds: xr.Dataset) -> dict[str, float]:
    """Shattering index, spectral exponent (mean and std over models), lag-1 autocorrelation."""
    si = metrics.shattering_index(ds)
    rho = metrics.autocorrelation(ds, max_lag=1).sel({LAG: 1})
    out = {
        "shattering_index": float(si["shattering_index"]),
        "shattering_index_std": float(si["shattering_index_std"]),
        "spectral_exponent": np.nan,
        "spectral_exponent_std": np.nan,
        "autocorrelation_lag1": float(rho),
    }
    try:
        with warnings.catch_warnings():
            # a gradient constant along the grid has no spectrum; the NaN says so in the data
            warnings.simplefilter("ignore", RuntimeWarning)
            se = metrics.spectral_exponent(ds)
    except ValueError:  # a grid too short for the default band: no exponent (NaN)
        return out
    out["spectral_exponent"] = float(se["spectral_exponent"])
    out["spectral_exponent_std"] = float(se["spectral_exponent_std"])
    return out


_SUMMARY_ATTRS = {
    "shattering_index": {"long_name": "shattering index 1 - rho(1)", "units": "1"},
    "shattering_index_std": {"long_name": "shattering index, std over seeds", "units": "1"},
    "spectral_exponent": {"long_name": "spectral exponent alpha of P(f) ~ f**-alpha", "units": "1"},
    "spectral_exponent_std": {"long_name": "spectral exponent, std over seeds", "units": "1"},
    "autocorrelation_lag1": {"long_name": "lag-1 gradient autocorrelation", "units": "1"},
}


def _summary_variables(
    rows: list[dict[str, float]], dims: tuple[str, ...], shape: tuple[int, ...]
) -> dict[str, Any]:
    return {
        key: (dims, np.array([r[key] for r in rows]).reshape(shape), attrs)
        for key, attrs in _SUMMARY_ATTRS.items()
    }


def _settings_attrs(**settings: Any) -> dict[str, Any]:
    from shatterkit import __version__

    return safe_attrs(
        {
            **settings,
            "torch_version": str(torch.__version__),
            "shatterkit_version": __version__,
            "reference": "Balduzzi et al., ICML 2017, arXiv:1702.08591 (PAPER.md)",
        }
    )


#: docstring fragments shared by the experiments, filled in by :func:`_shared_docstring`
_DOC_FRAGMENTS = {
    "    <grid parameters>\n": """\
    n : int, default 256
        Points on the grid [-2, 2].
    width : int, default 200
        Units per hidden layer (before a CReLU doubles them).
""",
    "    <ensemble parameters>\n": """\
    seeds : int, default 20
        Ensemble size: independent initialisations of every network.
    seed : int, default 0
        Root seed of the ensembles, the same for every architecture and depth (common random
        numbers), so that comparisons between them are not blurred by different draws.
    device : str or torch.device, optional
        Where the probes run; the networks are built on the CPU.
""",
}

_F = TypeVar("_F", bound=Callable[..., Any])


def _shared_docstring(func: _F) -> _F:
    for key, text in _DOC_FRAGMENTS.items():
        func.__doc__ = (func.__doc__ or "").replace(key, text)
    return func


# -- the paper's first figure ---------------------------------------------------------------------


@_shared_docstring
def figure1(
    *,
    shallow: int = 1,
    deep: int = 24,
    blocks: int = 50,
    n: int = 256,
    width: int = 200,
    seeds: int = 20,
    seed: int = 0,
    device: Any = None,
) -> xr.Dataset:
    """Compute the paper's first figure: gradients along the 1-D grid and their correlations.

    Panels: a ``shallow``-layer feedforward net with biases, a ``deep``-layer feedforward net
    with mean-centring (the variant the paper's caption is recalled to use) and with batch norm
    (PAPER.md says which of the two is uncertain, so both are measured), a ``blocks``-block
    resnet with batch norm, brown noise and white noise. Every network is an ensemble of
    ``seeds`` independent He initialisations probed on ``n`` equally spaced points of [-2, 2],
    batch statistics taken over the whole grid; the noise panels hold ``seeds`` series each,
    drawn with ``seed``.

    Parameters
    ----------
    shallow, deep : int, default 1 and 24
        Hidden layers of the two feedforward nets.
    blocks : int, default 50
        Residual blocks of the resnet.
    <grid parameters>
    <ensemble parameters>

    Returns
    -------
    xarray.Dataset
        Over ``panel`` (coords ``description`` and ``kind``: ``"network"`` or ``"noise"``):
        ``gradient`` (``panel, model, sample, feature``), ``correlation`` (``panel, sample,
        sample_other``; the gradient correlation over the ensemble,
        :func:`shatterkit.metrics.gradient_covariance`), ``shattering_index``,
        ``spectral_exponent`` (with ``_std`` over seeds) and ``autocorrelation_lag1``.
        Coord ``t`` on ``sample``.

    See Also
    --------
    depth_sweep : The same measures against depth.
    shatterkit.plot.figure1 : Draws the figure.

    Examples
    --------
    >>> from shatterkit.reproduce import figure1
    >>> ds = figure1(n=32, width=8, blocks=4, deep=4, seeds=2)
    >>> ds["panel"].values.tolist()
    ['1 layer', '4 layers, centring', '4 layers, BN', '4-block resnet, BN', 'brown noise', 'white noise']
    >>> ds["correlation"].dims
    ('panel', 'sample', 'sample_other')
    """
    panels: dict[str, tuple[str, int, bool] | str] = {
        f"{shallow} layer{'s' if shallow > 1 else ''}": ("feedforward", shallow, True),
        f"{deep} layers, centring": ("feedforward_centring", deep, False),
        f"{deep} layers, BN": ("feedforward_bn", deep, False),
        f"{blocks}-block resnet, BN": ("resnet_bn", blocks, False),
        "brown noise": "brown",
        "white noise": "white",
    }
    grid = inputs.line(-2.0, 2.0, n)
    grads, corrs, rows, descriptions, kinds = [], [], [], [], []
    for spec in panels.values():
        if isinstance(spec, str):
            ds = getattr(noise, spec)(n, n_models=seeds, seed=seed)
            descriptions.append(f"{spec} noise")
            kinds.append("noise")
        else:
            name, depth, biased = spec
            nets = _ensemble(name, depth, seeds=seeds, seed=seed, width=width, biased=biased)
            ds = input_gradients(nets, grid, device=device, progress=False)
            bias = ", biases N(0, 1)" if biased else ""
            descriptions.append(f"{ARCHITECTURES[name].description}{bias}, depth {depth}")
            kinds.append("network")
        grads.append(np.asarray(ds[GRADIENT].values, dtype=np.float64))
        corrs.append(metrics.gradient_covariance(ds).values)
        rows.append(_gradient_summary(ds))
    keys = list(panels)
    out = xr.Dataset(
        {
            GRADIENT: (
                (PANEL, MODEL, SAMPLE, FEATURE),
                np.stack(grads),
                {"long_name": "input gradient", "units": "output units per input unit"},
            ),
            "correlation": (
                (PANEL, SAMPLE, "sample_other"),
                np.stack(corrs),
                {"long_name": "gradient correlation over the ensemble", "units": "1"},
            ),
            **_summary_variables(rows, (PANEL,), (len(keys),)),
        },
        coords={
            PANEL: keys,
            "description": (PANEL, descriptions),
            "kind": (PANEL, kinds),
            MODEL: np.arange(seeds),
            SAMPLE: np.arange(n),
            T: (SAMPLE, grid[T].values, {"long_name": "input x", "units": "1"}),
        },
        attrs=_settings_attrs(
            experiment="figure1", n=n, width=width, seeds=seeds, seed=seed, batchnorm="population"
        ),
    )
    return out


def _panel(ds: xr.Dataset, key: str) -> xr.Dataset:
    """The gradient Dataset of one panel of :func:`figure1`, as the probes return it."""
    grad = ds[GRADIENT].sel({PANEL: key}, drop=True)
    drop = [c for c in grad.coords if c not in (MODEL, SAMPLE, T)]
    return xr.Dataset({GRADIENT: grad.drop_vars(drop)})


# -- depth sweep on the grid ----------------------------------------------------------------------


@_shared_docstring
def depth_sweep(
    depths: Sequence[int] = (1, 2, 4, 8, 16, 24, 32, 50),
    *,
    architectures: Sequence[str] = _GRID_ARCHITECTURES,
    max_lag: int = 32,
    n: int = 256,
    width: int = 200,
    seeds: int = 20,
    seed: int = 0,
    device: Any = None,
) -> xr.Dataset:
    """Shattering index and gradient autocorrelation against depth, on the paper's 1-D grid.

    For each architecture of :data:`ARCHITECTURES` (feedforward nets with biases, mean-centring
    or BN; resnets with a stem bias or BN, at beta = 1, 0.1 and 1/sqrt(L)) and each depth, an
    ensemble of ``seeds`` initialisations is probed on ``n`` points of [-2, 2]; brown and white
    noise are the references. PAPER.md recalls the paper's autocorrelation figure as comparing
    depths and beta = 1 against 0.1, averaged over about 20 runs.

    Parameters
    ----------
    depths : sequence of int
        Hidden layers (feedforward) or residual blocks (resnets).
    architectures : sequence of str
        Names from :data:`ARCHITECTURES`.
    max_lag : int, default 32
        Largest lag of the autocorrelation.
    <grid parameters>
    <ensemble parameters>

    Returns
    -------
    xarray.Dataset
        Over ``architecture`` (coord ``description``) and ``depth``: ``shattering_index``,
        ``spectral_exponent`` (each with ``_std`` over seeds), ``autocorrelation_lag1`` and
        ``autocorrelation`` (also over ``lag``); the noise references over ``reference``:
        ``reference_shattering_index`` and ``reference_autocorrelation``.

    See Also
    --------
    figure1 : The paper's first figure, at three depths.
    shatterkit.metrics.shattering_index : The index, 1 - lag-1 autocorrelation.
    shatterkit.metrics.autocorrelation : The autocorrelation against lag.

    Examples
    --------
    >>> from shatterkit.reproduce import depth_sweep
    >>> ds = depth_sweep((1, 3), architectures=("feedforward_bn",), n=32, width=8, seeds=2,
    ...                  max_lag=4)
    >>> ds["shattering_index"].dims, ds["autocorrelation"].sizes["lag"]
    (('architecture', 'depth'), 5)
    """
    caller = "depth_sweep"
    names = _check_architectures(architectures, _GRID_ARCHITECTURES, caller)
    depths = _check_depths(depths, "depths", caller)
    grid = inputs.line(-2.0, 2.0, n)
    rows, acfs = [], []
    for name in names:
        for depth in depths:
            nets = _ensemble(name, depth, seeds=seeds, seed=seed, width=width, biased=True)
            ds = input_gradients(nets, grid, device=device, progress=False)
            rows.append(_gradient_summary(ds))
            acfs.append(metrics.autocorrelation(ds, max_lag=max_lag).values)
    refs = {"brown noise": noise.brown, "white noise": noise.white}
    ref_ds = [make(n, n_models=seeds, seed=seed) for make in refs.values()]
    shape = (len(names), len(depths))
    return xr.Dataset(
        {
            **_summary_variables(rows, (ARCH, DEPTH), shape),
            "autocorrelation": (
                (ARCH, DEPTH, LAG),
                np.stack(acfs).reshape(*shape, max_lag + 1),
                {"long_name": "gradient autocorrelation", "units": "1"},
            ),
            "reference_shattering_index": (
                (REFERENCE,),
                [float(metrics.shattering_index(r)["shattering_index"]) for r in ref_ds],
                _SUMMARY_ATTRS["shattering_index"],
            ),
            "reference_autocorrelation": (
                (REFERENCE, LAG),
                np.stack([metrics.autocorrelation(r, max_lag=max_lag).values for r in ref_ds]),
                {"long_name": "gradient autocorrelation", "units": "1"},
            ),
        },
        coords={
            ARCH: list(names),
            "description": (ARCH, [ARCHITECTURES[k].description for k in names]),
            DEPTH: (DEPTH, np.array(depths), _DEPTH_ATTRS),
            LAG: (LAG, np.arange(max_lag + 1), {"long_name": "lag", "units": "samples"}),
            REFERENCE: list(refs),
        },
        attrs=_settings_attrs(
            experiment="depth_sweep",
            n=n,
            width=width,
            seeds=seeds,
            seed=seed,
            batchnorm="population",
            biases="feedforward: N(0, 1) on every hidden layer; resnet: N(0, 1) on the stem",
        ),
    )


# -- decay of gradient correlations in the theorems' regime ---------------------------------------


def _theory(name: str, depths: Sequence[int]) -> xr.DataArray:
    arch = ARCHITECTURES[name]
    if arch.family == "feedforward":
        return theory.feedforward_correlation(list(depths))
    if arch.norm == "none":
        return theory.resnet_correlation(list(depths), beta=float(arch.beta or 1.0))
    if arch.beta is not None:
        return theory.resnet_bn_correlation(list(depths), beta=arch.beta)
    per_depth = [theory.resnet_bn_correlation(d, beta=1 / math.sqrt(d)) for d in depths]
    out = xr.concat(per_depth, DEPTH, combine_attrs="drop_conflicts")
    out.attrs["formula"] = "1 / sqrt(1 + beta**2 * L) with beta = 1 / sqrt(L)"
    return out


#: growth of a BN resnet's skip-path variance over the inputs, per block and per beta²: the share
#: of a ReLU branch's second moment that varies across inputs, 1 - E[relu(z)]² / E[relu(z)²]
BRANCH_VARIANCE_SHARE = 1 - 1 / math.pi


def _blockwise_resnet_bn(depths: Sequence[int], beta: float | None, v0: float) -> np.ndarray:
    r"""The per-block product behind the BN resnet's closed form, for this experiment's setup.

    PAPER.md's per-block factors: block :math:`l` multiplies the gradient's variance by
    :math:`1 + \beta^2 / v_l` and the covariance of two inputs by :math:`1 + \beta^2 / (2 v_l)`,
    where :math:`v_l` is the variance of the skip path that its BN divides by. Batch norm
    divides by the spread over the inputs, and of a branch's second moment :math:`\beta^2`
    only the share :data:`BRANCH_VARIANCE_SHARE` (:math:`1 - 1/\pi`) varies across inputs (the
    rest is the mean of the rectified units, the same for every input), so
    :math:`v_l = v_0 + (1 - 1/\pi) l \beta^2`, with :math:`v_0` the variance of the stem's
    output. The product decays as :math:`L^{-1/(2(1 - 1/\pi))} \approx L^{-0.73}` at large
    depth; with :math:`v_l = 1 + l \beta^2`, the form PAPER.md states, it decays as
    :math:`L^{-1/2}`, the shape of :func:`shatterkit.theory.resnet_bn_correlation`.
    """
    out = []
    for depth in depths:
        b2 = 1 / depth if beta is None else beta**2
        v = v0 + BRANCH_VARIANCE_SHARE * b2 * np.arange(depth)
        out.append(float(np.prod((1 + b2 / (2 * v)) / (1 + b2 / v))))
    return np.array(out)


def _mean_pair_cosine(ds: xr.Dataset) -> np.ndarray:
    """Per model: the cosine similarity of the gradients at two distinct inputs, over all pairs."""
    cos = metrics.gradient_covariance(ds, over="features").transpose(MODEL, ...).values
    upper = np.triu_indices(cos.shape[-1], k=1)
    return cos[:, upper[0], upper[1]].mean(-1)


@_shared_docstring
def decay(
    *,
    feedforward_depths: Sequence[int] = (1, 2, 3, 4, 5, 6, 8),
    resnet_depths: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    architectures: Sequence[str] = _DECAY_ARCHITECTURES,
    n: int = 64,
    in_features: int = 128,
    width: int = 200,
    seeds: int = 20,
    seed: int = 0,
    device: Any = None,
) -> xr.Dataset:
    r"""Gradient correlation of distinct inputs against depth, in the theorems' regime, fitted.

    The theorems (PAPER.md, "Theorems") assume every rectifier is on with probability 1/2 and the
    patterns of distinct inputs are independent. Here the inputs are ``n`` random Gaussian
    vectors in ``in_features`` dimensions (nearly orthogonal), the networks have no biases, and
    batch norm uses the statistics of the probed set. For each seed the measured correlation is
    the cosine similarity :math:`\langle g_i, g_j \rangle / (\lVert g_i \rVert \lVert g_j
    \rVert)` of the input gradients, averaged over all pairs :math:`i < j`; the spread is over
    seeds (``seed`` draws the inputs too). :func:`shatterkit.metrics.fit_covariance_decay` fits an exponential and a power law in
    depth, beside :mod:`shatterkit.theory`'s prediction: :math:`2^{-L}` (feedforward),
    :math:`((1 + \beta^2/2)/(1 + \beta^2))^L` (resnet), :math:`1/\sqrt{1 + \beta^2 L}` (resnet
    with BN). Networks without BN leave the regime as depth grows; the result shows how far.

    Parameters
    ----------
    feedforward_depths, resnet_depths : sequence of int
        Depths of the feedforward nets and of the resnets.
    architectures : sequence of str
        Names from :data:`ARCHITECTURES` (not ``feedforward_centring``).
    n : int, default 64
        Random inputs (``n (n - 1) / 2`` pairs).
    in_features : int, default 128
        Their dimension.
    width : int, default 200
        Units per hidden layer.
    <ensemble parameters>

    Returns
    -------
    xarray.Dataset
        Over ``architecture`` and ``depth`` (the union of both depth lists; NaN where an
        architecture was not measured): ``correlation`` (also over ``model``), the fit's
        ``measured``, ``measured_std``, ``exponential``, ``power_law``, ``theory`` and
        ``theory_blockwise`` (the per-block product behind the BN resnets' closed form, for the
        measured variance of the stem's output; NaN for the others); over ``architecture``: the
        fit's scalars (``exp_r``, ``pow_alpha``, their standard errors, R² and AIC),
        ``preferred`` and ``theory_formula``.

    See Also
    --------
    shatterkit.metrics.fit_covariance_decay : The exponential and power-law fits.
    shatterkit.theory : The predictions.

    Examples
    --------
    >>> from shatterkit.reproduce import decay
    >>> ds = decay(feedforward_depths=(1, 2, 3), architectures=("feedforward_bn",), n=8,
    ...            in_features=32, width=32, seeds=4)
    >>> ds["correlation"].dims, str(ds["theory_formula"].sel(architecture="feedforward_bn").item())
    (('architecture', 'depth', 'model'), '2**-L')
    """
    caller = "decay"
    allowed = tuple(k for k in ARCHITECTURES if ARCHITECTURES[k].norm != "centring")
    names = _check_architectures(architectures, allowed, caller)
    ff_depths = _check_depths(feedforward_depths, "feedforward_depths", caller)
    res_depths = _check_depths(resnet_depths, "resnet_depths", caller)
    x = np.random.default_rng(seed).standard_normal((n, in_features))
    # variance of the resnet stem's output: He gain 2 times the inputs' mean square
    v0 = 2.0 * float((x**2).mean())
    fits = []
    for name in names:
        arch = ARCHITECTURES[name]
        depths = ff_depths if arch.family == "feedforward" else res_depths
        values = []
        for depth in depths:
            nets = _ensemble(
                name, depth, seeds=seeds, seed=seed, width=width, in_features=in_features
            )
            values.append(
                _mean_pair_cosine(input_gradients(nets, x, device=device, progress=False))
            )
        measured = xr.DataArray(
            np.stack(values),
            dims=(DEPTH, MODEL),
            coords={DEPTH: list(depths), MODEL: np.arange(seeds)},
        )
        prediction = _theory(name, depths)
        fit = metrics.fit_covariance_decay(measured, theory=prediction)
        fit["correlation"] = measured.assign_attrs(
            long_name="mean cosine similarity of the gradients at two inputs", units="1"
        )
        blockwise = np.full(len(depths), np.nan)
        if arch.family == "resnet" and arch.norm == "batchnorm":
            blockwise = _blockwise_resnet_bn(depths, arch.beta, v0)
        fit["theory_blockwise"] = (
            (DEPTH,),
            blockwise,
            {"long_name": "per-block product, skip-path variance over the inputs", "units": "1"},
        )
        fit["theory"].attrs = {"long_name": "predicted correlation", "units": "1"}
        fit["preferred"] = fit.attrs["preferred"]
        fit["theory_formula"] = str(prediction.attrs["formula"])
        fit.attrs = {}
        fits.append(fit)
    out = xr.concat(fits, dim=pd.Index(list(names), name=ARCH), join="outer")
    return out.assign_coords(
        {
            "description": (ARCH, [ARCHITECTURES[k].description for k in names]),
            DEPTH: (DEPTH, out[DEPTH].values, _DEPTH_ATTRS),
        }
    ).assign_attrs(
        _settings_attrs(
            experiment="decay",
            n=n,
            in_features=in_features,
            width=width,
            seeds=seeds,
            seed=seed,
            inputs="standard Gaussian vectors",
            batchnorm="population",
            stem_variance=v0,
            biases="none",
        )
    )


# -- activation patterns --------------------------------------------------------------------------


@_shared_docstring
def coactivation(
    depth: int = 24,
    *,
    architectures: Sequence[str] = _COACTIVATION_ARCHITECTURES,
    n: int = 256,
    width: int = 200,
    seeds: int = 20,
    seed: int = 0,
    device: Any = None,
) -> xr.Dataset:
    """Co-activation rate and pattern dispersion per layer, with and without BN and skips.

    On the paper's 1-D grid, for every rectifier layer of ``depth``-deep nets: the co-activation
    rate (probability that a unit is on for both inputs of a pair; 1/4 under BN, about 1/2 for
    deep nets without it), the dispersion (fraction of units that differ between the patterns of
    two inputs) over all pairs and between neighbouring grid points, and the fraction of units
    constant on the grid (never or always on). PAPER.md, "Activation patterns".

    Parameters
    ----------
    depth : int, default 24
        Hidden layers or residual blocks.
    architectures : sequence of str
        Names from :data:`ARCHITECTURES`.
    <grid parameters>
    <ensemble parameters>

    Returns
    -------
    xarray.Dataset
        Over ``architecture``, ``model`` and ``depth`` (the layer's 1-based depth):
        ``coactivation``, ``dispersion``, ``dispersion_lag1``, ``constant_units``; and
        ``pattern`` (``architecture, sample, unit``): the on/off raster of the deepest layer of
        the first model.

    See Also
    --------
    shatterkit.metrics.coactivation_rate : Probability that a unit is on for both inputs.
    shatterkit.metrics.pattern_dispersion : Fraction of units that differ between two inputs.

    Examples
    --------
    >>> from shatterkit.reproduce import coactivation
    >>> ds = coactivation(3, architectures=("feedforward_bn",), n=16, width=8, seeds=2)
    >>> ds["coactivation"].dims, ds["depth"].values.tolist()
    (('architecture', 'model', 'depth'), [1, 2, 3])
    """
    caller = "coactivation"
    names = _check_architectures(architectures, _GRID_ARCHITECTURES, caller)
    (depth,) = _check_depths([depth], "depth", caller)
    grid = inputs.line(-2.0, 2.0, n)
    stats: dict[str, list[np.ndarray]] = {k: [] for k in _PATTERN_ATTRS}
    rasters = []
    for name in names:
        nets = _ensemble(name, depth, seeds=seeds, seed=seed, width=width, biased=True)
        pat = activation_patterns(nets, grid, device=device, progress=False)
        per_model: dict[str, list[np.ndarray]] = {k: [] for k in _PATTERN_ATTRS}
        for member in range(seeds):
            one = pat.isel({MODEL: member})
            rate = metrics.activation_rate(one)
            per_model["coactivation"].append(metrics.coactivation_rate(one).values)
            per_model["dispersion"].append(metrics.pattern_dispersion(one).values)
            per_model["dispersion_lag1"].append(
                metrics.pattern_dispersion(one, max_lag=1).sel({LAG: 1}).values
            )
            constant = rate["dead_units"] + rate["linear_units"]
            per_model["constant_units"].append((constant / width).values)
        for key, value in per_model.items():
            stats[key].append(np.stack(value))
        deepest = pat[DEPTH].values == pat[DEPTH].values.max()
        rasters.append(pat["pattern"].isel({MODEL: 0}).values[:, deepest])
    return xr.Dataset(
        {
            key: ((ARCH, MODEL, DEPTH), np.stack(value), _PATTERN_ATTRS[key])
            for key, value in stats.items()
        }
        | {
            "pattern": (
                (ARCH, SAMPLE, UNIT),
                np.stack(rasters),
                {"long_name": f"unit on, layer {depth}, first model", "units": "1"},
            )
        },
        coords={
            ARCH: list(names),
            "description": (ARCH, [ARCHITECTURES[k].description for k in names]),
            MODEL: np.arange(seeds),
            DEPTH: (DEPTH, np.arange(1, depth + 1), {"long_name": "layer depth", "units": "1"}),
            SAMPLE: np.arange(n),
            T: (SAMPLE, grid[T].values, {"long_name": "input x", "units": "1"}),
        },
        attrs=_settings_attrs(
            experiment="coactivation", n=n, width=width, seeds=seeds, seed=seed, depth=depth
        ),
    )


_PATTERN_ATTRS = {
    "coactivation": {"long_name": "co-activation rate", "units": "1"},
    "dispersion": {"long_name": "pattern dispersion, all pairs", "units": "1"},
    "dispersion_lag1": {"long_name": "pattern dispersion, neighbouring points", "units": "1"},
    "constant_units": {"long_name": "fraction of units never or always on", "units": "1"},
}


# -- looks-linear initialisation ------------------------------------------------------------------


@_shared_docstring
def looks_linear(
    depths: Sequence[int] = (24, 200),
    *,
    n: int = 256,
    width: int = 200,
    seeds: int = 20,
    seed: int = 0,
    device: Any = None,
) -> xr.Dataset:
    """The looks-linear CReLU net's gradients beside a feedforward net's of the same depth.

    At initialisation the looks-linear net computes a linear map, so its gradient is the same at
    every input: no shattering (PAPER.md, "Looks-linear initialization"). The comparison is a
    He-initialised feedforward ReLU net with batch norm, which shatters.

    Parameters
    ----------
    depths : sequence of int
        Hidden layers of both nets.
    <grid parameters>
    <ensemble parameters>

    Returns
    -------
    xarray.Dataset
        Over ``architecture`` (``looks_linear``, ``feedforward_bn``) and ``depth``:
        ``gradient`` (also over ``model`` and ``sample``), ``shattering_index`` (``_std`` over
        seeds), ``autocorrelation_lag1``, ``spectral_exponent`` and ``gradient_variation``
        ((max - min) / mean ``|g|`` along the grid, mean over seeds).

    See Also
    --------
    shatterkit.models.looks_linear : The looks-linear CReLU net.

    Examples
    --------
    >>> from shatterkit.reproduce import looks_linear
    >>> ds = looks_linear((3,), n=16, width=8, seeds=2)
    >>> float(ds["shattering_index"].sel(architecture="looks_linear", depth=3))
    0.0
    """
    depths = _check_depths(depths, "depths", "looks_linear")
    grid = inputs.line(-2.0, 2.0, n)
    factories: dict[str, Callable[[int], Callable[..., nn.Module]]] = {
        "looks_linear": lambda d: partial(models.looks_linear, d, width),
        "feedforward_bn": lambda d: partial(
            _build, "feedforward_bn", d, width=width, in_features=1, biased=False
        ),
    }
    grads, rows, variation = [], [], []
    for make in factories.values():
        for depth in depths:
            ds = input_gradients(
                models.ensemble(make(depth), seeds, seed=seed), grid, device=device, progress=False
            )
            g = np.asarray(ds[GRADIENT].values[..., 0], dtype=np.float64)
            grads.append(g)
            rows.append(_gradient_summary(ds))
            variation.append(float((np.ptp(g, axis=1) / np.abs(g).mean(axis=1)).mean()))
    shape = (len(factories), len(depths))
    return xr.Dataset(
        {
            GRADIENT: (
                (ARCH, DEPTH, MODEL, SAMPLE),
                np.stack(grads).reshape(*shape, seeds, n),
                {"long_name": "input gradient", "units": "output units per input unit"},
            ),
            **_summary_variables(rows, (ARCH, DEPTH), shape),
            "gradient_variation": (
                (ARCH, DEPTH),
                np.array(variation).reshape(shape),
                {"long_name": "(max - min) / mean |gradient| along the grid", "units": "1"},
            ),
        },
        coords={
            ARCH: list(factories),
            "description": (
                ARCH,
                ["CReLU, looks-linear initialisation", ARCHITECTURES["feedforward_bn"].description],
            ),
            DEPTH: (DEPTH, np.array(depths), _DEPTH_ATTRS),
            MODEL: np.arange(seeds),
            SAMPLE: np.arange(n),
            T: (SAMPLE, grid[T].values, {"long_name": "input x", "units": "1"}),
        },
        attrs=_settings_attrs(experiment="looks_linear", n=n, width=width, seeds=seeds, seed=seed),
    )


# -- figures --------------------------------------------------------------------------------------


_XarrayT = TypeVar("_XarrayT", xr.DataArray, xr.Dataset)


def _as_layers(da: _XarrayT) -> _XarrayT:
    """Data over ``depth`` relabelled over ``layer`` with coord ``depth`` (for :mod:`plot`)."""
    values = da[DEPTH].values
    return da.rename({DEPTH: LAYER}).assign_coords(
        {LAYER: [str(v) for v in values], DEPTH: (LAYER, values, _DEPTH_ATTRS)}
    )


def _draw_figure1(ds: xr.Dataset) -> Figure:
    keys = [str(k) for k in ds[PANEL].values]
    panels = {k: _panel(ds, k) for k in keys}
    covs = {k: ds["correlation"].sel({PANEL: k}, drop=True) for k in keys}
    fig = plot.figure1(panels, covs)
    for ax, key in zip(fig.axes[: len(keys)], keys, strict=True):
        si = float(ds["shattering_index"].sel({PANEL: key}))
        ax.set_title(f"{key}\nshattering index {si:.2f}", fontsize=10)
        ax.set_xlabel("grid index")
    return fig


def _draw_autocorrelation(ds: xr.Dataset) -> Figure:
    names = [str(a) for a in ds[ARCH].values]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    reference = {
        str(r).split()[0]: ds["reference_autocorrelation"].sel({REFERENCE: r}, drop=True)
        for r in ds[REFERENCE].values
    }
    for ax, name in zip(axes, names, strict=False):
        acf = ds["autocorrelation"].sel({ARCH: name}, drop=True)
        plot.autocorrelation(acf, hue=DEPTH, reference=reference, palette="viridis", ax=ax)
        ax.set_title(str(ds["description"].sel({ARCH: name}).item()), fontsize=9)
        ax.legend(title="depth", fontsize=7, ncols=2)
    return fig


def _draw_depth_sweep(ds: xr.Dataset) -> Figure:
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, var in ((left, "shattering_index"), (right, "spectral_exponent")):
        data = _by_architecture(ds[[var, f"{var}_std"]].drop_vars("description"))
        plot.profile(data, y=var, ax=ax, marker="o", ms=3)
        ax.set_xscale("log")
        ax.set_xlabel("depth (layers or blocks)")
    for r in ds[REFERENCE].values:
        value = float(ds["reference_shattering_index"].sel({REFERENCE: r}))
        left.axhline(value, ls="--", lw=1, color="0.5")
        left.annotate(str(r), (1, value), fontsize=8, color="0.4", va="bottom")
    right.axhline(2, ls="--", lw=1, color="0.5")
    right.axhline(0, ls="--", lw=1, color="0.5")
    left.legend(fontsize=7)
    right.get_legend().remove()
    return fig


def _draw_decay(ds: xr.Dataset) -> Figure:
    names = [str(a) for a in ds[ARCH].values]
    cols = 3
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        one = ds.sel({ARCH: name}).dropna(DEPTH, subset=["measured"])
        fit = one[["measured", "measured_std", "exponential", "power_law", "theory"]]
        fit = fit.assign(exp_r=one["exp_r"], pow_alpha=one["pow_alpha"])
        fit.attrs["preferred"] = str(one["preferred"].item())
        plot.decay(fit, ax=ax)
        if np.isfinite(one["theory_blockwise"]).any():
            ax.plot(
                one[DEPTH], one["theory_blockwise"], ls="-.", color="0.4", label="per-block product"
            )
            ax.legend(fontsize=7)
        else:
            ax.legend(fontsize=7)
        ax.set_title(
            f"{one['description'].item()}\ntheory {one['theory_formula'].item()}", fontsize=9
        )
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return fig


def _by_architecture(data: _XarrayT) -> dict[str, _XarrayT]:
    """One entry per architecture, over ``layer`` (for :mod:`plot`'s profile functions)."""
    return {str(a): _as_layers(data.sel({ARCH: a}, drop=True)) for a in data[ARCH].values}


def _draw_coactivation(ds: xr.Dataset) -> Figure:
    names = [str(a) for a in ds[ARCH].values]
    fig = Figure(figsize=(4.2 * max(3, len(names)), 7.5), layout="constrained")
    top = fig.subplots(2, max(3, len(names)), squeeze=False)
    plot.coactivation(_by_architecture(ds["coactivation"].mean(MODEL)), ax=top[0, 0])
    for ax, key in ((top[0, 1], "dispersion"), (top[0, 2], "dispersion_lag1")):
        plot.dispersion(_by_architecture(ds[key].mean(MODEL)), ax=ax)
        ax.set_ylabel(ds[key].attrs["long_name"])
    for ax in top[0, :3]:
        ax.legend(fontsize=7)
    for ax in top[0, 3:]:
        ax.set_visible(False)
    depth = int(ds[DEPTH].values.max())
    for ax, name in zip(top[1], names, strict=False):
        bits = ds["pattern"].sel({ARCH: name}, drop=True)
        pat = xr.Dataset(
            {"pattern": bits.drop_vars([c for c in bits.coords if c != SAMPLE])},
            coords={
                LAYER: (UNIT, [f"layer {depth}"] * bits.sizes[UNIT]),
                DEPTH: (UNIT, [depth] * bits.sizes[UNIT]),
            },
        )
        plot.patterns(pat, ax=ax)
        ax.set_title(f"{name}: layer {depth}, first model", fontsize=9)
    for ax in top[1, len(names) :]:
        ax.set_visible(False)
    return fig


def _draw_looks_linear(ds: xr.Dataset) -> Figure:
    names = [str(a) for a in ds[ARCH].values]
    depths = [int(d) for d in ds[DEPTH].values]
    fig = Figure(figsize=(4.5 * len(depths), 3.2 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), len(depths), squeeze=False)
    for i, name in enumerate(names):
        for j, depth in enumerate(depths):
            grad = ds[GRADIENT].sel({ARCH: name, DEPTH: depth}, drop=True).isel({MODEL: 0})
            drop = [c for c in grad.coords if c not in (SAMPLE, T)]
            plot.gradients(xr.Dataset({GRADIENT: grad.drop_vars(drop)}), ax=axes[i, j], lw=0.8)
            si = float(ds["shattering_index"].sel({ARCH: name, DEPTH: depth}))
            axes[i, j].set_title(f"{name}, depth {depth}: shattering index {si:.2f}", fontsize=9)
    return fig


#: the figures drawn from each experiment's Dataset, by file stem
_FIGURES: dict[str, dict[str, Callable[[xr.Dataset], Figure]]] = {
    "figure1": {"figure1": _draw_figure1},
    "depth_sweep": {"depth_sweep": _draw_depth_sweep, "autocorrelation": _draw_autocorrelation},
    "decay": {"decay": _draw_decay},
    "coactivation": {"coactivation": _draw_coactivation},
    "looks_linear": {"looks_linear": _draw_looks_linear},
}


def _save(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)  # a no-op for Figures pyplot does not manage


# -- the report -----------------------------------------------------------------------------------


def _pm(mean: float, std: float | None = None, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "nan"
    text = f"{mean:.{digits}g}"
    return text if std is None else f"{text} ± {std:.2g}"


def _verdict(measured: float, se: float, predicted: float) -> str:
    ok = abs(measured - predicted) <= max(2 * se, REL_TOL * abs(predicted))
    return "agrees" if ok else "disagrees"


def _si_class(si: float) -> str:
    return "brown-like" if si <= BROWN_LIKE else "white-like" if si >= WHITE_LIKE else "between"


def _row(
    section: str,
    item: str,
    quantity: str,
    measured: float,
    spread: float | None,
    paper: str,
    predicted: float,
    verdict: str,
    note: str = "",
    shown: str | None = None,
) -> dict[str, Any]:
    spread = np.nan if spread is None else float(spread)
    if shown is None:
        shown = _pm(measured, spread if np.isfinite(spread) else None)
    return {
        "section": section,
        "item": item,
        "quantity": quantity,
        "measured": float(measured),
        "spread": spread,
        "shown": shown,
        "paper": paper,
        "predicted": float(predicted),
        "verdict": verdict,
        "note": note,
    }


def _figure1_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    si = ds["shattering_index"]
    sd = ds["shattering_index_std"]
    alpha = ds["spectral_exponent"]
    keys = [str(k) for k in ds[PANEL].values]
    shallow, centring, bn, res, brown, white = keys
    rows = []
    expect = {
        shallow: ("brown-like", "brown noise (1-layer net ~ brown)"),
        centring: ("white-like", "white noise (24-layer net ~ white)"),
        bn: ("white-like", "white noise (same net with BN)"),
    }
    for key, (cls, paper) in expect.items():
        v = float(si.sel({PANEL: key}))
        rows.append(
            _row(
                "figure 1",
                key,
                "shattering index (SI)",
                v,
                float(sd.sel({PANEL: key})),
                f"{paper}",
                np.nan,
                "agrees" if _si_class(v) == cls else "disagrees",
                f"{_si_class(v)}; spectral exponent {float(alpha.sel({PANEL: key})):.2f} "
                f"(brown 2, white 0)",
            )
        )
    lo, hi, v = (float(si.sel({PANEL: k})) for k in (shallow, centring, res))
    between = lo < v < hi and v < 0.5
    rows.append(
        _row(
            "figure 1",
            res,
            "shattering index (SI)",
            v,
            float(sd.sel({PANEL: res})),
            "between the 1- and 24-layer nets, much closer to brown",
            np.nan,
            "agrees" if between else "disagrees",
            f"spectral exponent {float(alpha.sel({PANEL: res})):.2f}; "
            f"{shallow} {lo:.3f} < {v:.3f} < {centring} {hi:.3f}",
        )
    )
    b, w = float(si.sel({PANEL: brown})), float(si.sel({PANEL: white}))
    n = ds.sizes[SAMPLE]
    rows.append(
        _row(
            "figure 1",
            brown,
            "shattering index (SI)",
            b,
            float(sd.sel({PANEL: brown})),
            f"reference: about 3/n = {3 / n:.3f}",
            3 / n,
            "reference",
            f"spectral exponent {float(alpha.sel({PANEL: brown})):.2f} (ideal 2)",
        )
    )
    rows.append(
        _row(
            "figure 1",
            white,
            "shattering index (SI)",
            w,
            float(sd.sel({PANEL: white})),
            "reference: 1",
            1.0,
            "reference",
            f"spectral exponent {float(alpha.sel({PANEL: white})):.2f} (ideal 0)",
        )
    )
    return rows


def _sweep_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    deepest = int(ds[DEPTH].values.max())
    names = [str(a) for a in ds[ARCH].values]
    si = ds["shattering_index"].sel({DEPTH: deepest})
    sd = ds["shattering_index_std"].sel({DEPTH: deepest})

    def get(name: str) -> tuple[float, float]:
        return float(si.sel({ARCH: name})), float(sd.sel({ARCH: name}))

    item = f"depth {deepest}"
    for name in ("feedforward_centring", "feedforward_bn", "feedforward"):
        if name not in names:
            continue
        v, s = get(name)
        first = float(ds["shattering_index"].sel({ARCH: name}).isel({DEPTH: 0}))
        note = f"SI {first:.3f} at depth {int(ds[DEPTH][0])}; {_si_class(v)}"
        if name == "feedforward" and _si_class(v) != "white-like":
            note += (
                "; without centring the units drift to always on/off, the net is nearly "
                "linear on the grid (see co-activation rows)"
            )
        rows.append(
            _row(
                "depth sweep (grid)",
                f"{name}, {item}",
                "SI",
                v,
                s,
                "deep feedforward nets shatter: white-like",
                np.nan,
                "agrees" if _si_class(v) == "white-like" else "disagrees",
                note,
            )
        )
    pairs = [
        ("resnet_bn", "feedforward_bn", "resnet + BN shatters far less than feedforward + BN"),
        ("resnet", "feedforward_bn", "resnet (no BN) shatters less than feedforward + BN"),
        ("resnet_bn_beta=0.1", "resnet_bn", "smaller beta shatters less (beta 0.1 < 1)"),
    ]
    for a, b, paper in pairs:
        if a in names and b in names:
            (va, sa), (vb, _) = get(a), get(b)
            rows.append(
                _row(
                    "depth sweep (grid)",
                    f"{a}, {item}",
                    "SI",
                    va,
                    sa,
                    paper,
                    np.nan,
                    "agrees" if va < vb else "disagrees",
                    f"{b}: SI {vb:.3f}",
                )
            )
    name = "resnet_bn_beta=1/sqrt(L)"
    if name in names:
        rho = ds["autocorrelation_lag1"].sel({ARCH: name})
        v, s = get(name)
        rows.append(
            _row(
                "depth sweep (grid)",
                f"{name}, {item}",
                "SI",
                v,
                s,
                "beta ~ 1/sqrt(L): correlation bounded away from 0 at any depth",
                np.nan,
                "agrees" if float(rho.min()) > 0.5 else "disagrees",
                f"lag-1 autocorrelation {float(rho.min()):.3f} to {float(rho.max()):.3f} over depths",
            )
        )
    return rows


_DECAY = "decay (theorems' regime)"


def _decay_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    seeds = ds.sizes[MODEL]
    for name in (str(a) for a in ds[ARCH].values):
        one = ds.sel({ARCH: name}).dropna(DEPTH, subset=["measured"])
        arch = ARCHITECTURES[name]
        formula = str(one["theory_formula"].item())
        deepest = int(one[DEPTH].values.max())
        m = float(one["measured"].sel({DEPTH: deepest}))
        s = float(one["measured_std"].sel({DEPTH: deepest}))
        p = float(one["theory"].sel({DEPTH: deepest}))
        note = f"seeds {seeds}; ratio measured/predicted {m / p:.3g}"
        blockwise = float(one["theory_blockwise"].sel({DEPTH: deepest}))
        if np.isfinite(blockwise):
            note += f"; per-block product {blockwise:.3g}"
        if arch.norm == "none":
            note += "; no BN: patterns of distinct inputs correlate with depth (outside the regime)"
        rows.append(
            _row(
                _DECAY,
                f"{name}, L = {deepest}",
                "gradient correlation",
                m,
                s,
                formula,
                p,
                _verdict(m, s / math.sqrt(seeds), p),
                note,
            )
        )
        if arch.family == "feedforward" or arch.norm == "none":
            rate = 0.5 if arch.family == "feedforward" else 0.75
            paper = f"r = {rate} ({formula})"
            rows += _fit_rows(one, "exp_r", "fitted rate r of a r^L", rate, paper, "exponential")
        elif arch.beta == 1.0:
            paper = "alpha = 1/2 (1/sqrt(1 + L) ~ L^-1/2)"
            quantity = "fitted exponent alpha of a L^-alpha"
            rows += _fit_rows(one, "pow_alpha", quantity, 0.5, paper, "power_law")
            rows.append(_local_exponent_row(one))
    return rows


def _fit_rows(
    one: xr.Dataset, parameter: str, quantity: str, predicted: float, paper: str, shape: str
) -> list[dict[str, Any]]:
    """The fitted decay parameter against the theorem's, and which shape the fit prefers."""
    value, se = float(one[parameter]), float(one[f"{parameter}_stderr"])
    preferred = str(one["preferred"].item())
    aic = f"AIC exp {float(one['exp_aic']):.1f}, pow {float(one['pow_aic']):.1f}"
    r2 = f"R² exp {float(one['exp_r2']):.3f}, pow {float(one['pow_r2']):.3f}"
    name = str(one[ARCH].item())
    return [
        _row(
            _DECAY,
            name,
            quantity,
            value,
            se,
            paper,
            predicted,
            _verdict(value, se, predicted),
            f"preferred fit: {preferred}; {aic}",
        ),
        _row(
            _DECAY,
            name,
            "preferred fit",
            np.nan,
            None,
            shape.replace("_", " "),
            np.nan,
            "agrees" if preferred == shape else "disagrees",
            r2,
            shown=preferred,
        ),
    ]


def _local_exponent_row(one: xr.Dataset) -> dict[str, Any]:
    """The decay exponent between the two largest depths, against 1/2 and the per-block product."""
    shallow, deep = (int(d) for d in one[DEPTH].values[-2:])
    span = math.log(deep / shallow)
    per_seed = np.log(
        one["correlation"].sel({DEPTH: shallow}) / one["correlation"].sel({DEPTH: deep})
    )
    local = float(
        np.log(one["measured"].sel({DEPTH: shallow}) / one["measured"].sel({DEPTH: deep}))
    )
    product = one["theory_blockwise"]
    expected = float(np.log(product.sel({DEPTH: shallow}) / product.sel({DEPTH: deep})) / span)
    return _row(
        _DECAY,
        f"{one[ARCH].item()}, L = {shallow} to {deep}",
        "local exponent -dlog(rho)/dlog(L)",
        local / span,
        float((per_seed / span).std()),
        "1/2 (1/sqrt(1 + L) ~ L^-1/2)",
        0.5,
        _verdict(local / span, float((per_seed / span).std()) / math.sqrt(per_seed.size), 0.5),
        f"per-block product with the skip path's variance over the inputs: {expected:.3g} here, "
        f"1/(2(1 - 1/pi)) = {1 / (2 * BRANCH_VARIANCE_SHARE):.3g} as L grows",
    )


def _coactivation_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    names = [str(a) for a in ds[ARCH].values]
    deepest = int(ds[DEPTH].values.max())
    per_model = ds["coactivation"].mean(DEPTH)
    for name in names:
        arch = ARCHITECTURES[name]
        if arch.norm == "batchnorm":
            v, s = (
                float(per_model.sel({ARCH: name}).mean()),
                float(per_model.sel({ARCH: name}).std()),
            )
            p = theory.coactivation_bn()
            rows.append(
                _row(
                    "co-activation (grid)",
                    f"{name}, mean over layers",
                    "co-activation rate",
                    v,
                    s,
                    "1/4 with BN",
                    p,
                    _verdict(v, s / math.sqrt(ds.sizes[MODEL]), p),
                )
            )
        else:
            last = ds["coactivation"].sel({ARCH: name, DEPTH: deepest})
            v, s = float(last.mean()), float(last.std())
            const = float(ds["constant_units"].sel({ARCH: name, DEPTH: deepest}).mean())
            paper = (
                "about 1/2 for deep nets without BN"
                if arch.family == "feedforward"
                else ("not stated (feedforward without BN: 1/2)")
            )
            p = theory.coactivation_feedforward()
            verdict = _verdict(v, s / math.sqrt(ds.sizes[MODEL]), p)
            rows.append(
                _row(
                    "co-activation (grid)",
                    f"{name}, layer {deepest}",
                    "co-activation rate",
                    v,
                    s,
                    paper,
                    p,
                    verdict if arch.family == "feedforward" else "not stated",
                    f"{const:.0%} of the units never or always on",
                )
            )
    lag1 = ds["dispersion_lag1"].sel({DEPTH: deepest})
    if {"feedforward_bn", "resnet_bn"} <= set(names):
        ff, res = (float(lag1.sel({ARCH: k}).mean()) for k in ("feedforward_bn", "resnet_bn"))
        rows.append(
            _row(
                "co-activation (grid)",
                f"feedforward_bn, layer {deepest}",
                "dispersion between neighbouring points",
                ff,
                float(lag1.sel({ARCH: "feedforward_bn"}).std()),
                "feedforward + BN changes pattern almost everywhere; skips keep "
                "patterns locally coherent",
                np.nan,
                "agrees" if ff > 2 * res else "disagrees",
                f"resnet_bn: {res:.3g} (units flipping per grid step)",
            )
        )
    if {"feedforward", "feedforward_bn"} <= set(names):
        disp = ds["dispersion"].sel({DEPTH: deepest})
        plain, bn = (float(disp.sel({ARCH: k}).mean()) for k in ("feedforward", "feedforward_bn"))
        rows.append(
            _row(
                "co-activation (grid)",
                f"feedforward, layer {deepest}",
                "dispersion over all pairs",
                plain,
                float(disp.sel({ARCH: "feedforward"}).std()),
                "without BN the representations collapse (patterns shared)",
                np.nan,
                "agrees" if plain < bn / 2 else "disagrees",
                f"feedforward_bn: {bn:.3g} (1/2 for independent patterns)",
            )
        )
    return rows


def _looks_linear_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    for depth in (int(d) for d in ds[DEPTH].values):
        ll = ds.sel({ARCH: "looks_linear", DEPTH: depth})
        ff = ds.sel({ARCH: "feedforward_bn", DEPTH: depth})
        v = float(ll["shattering_index"])
        rows.append(
            _row(
                "looks-linear",
                f"looks_linear, depth {depth}",
                "SI",
                v,
                float(ll["shattering_index_std"]),
                "0: the gradient is the same at every input",
                0.0,
                "agrees" if v < 1e-6 else "disagrees",
                f"(max - min)/mean |g| = {float(ll['gradient_variation']):.2g}",
            )
        )
        w = float(ff["shattering_index"])
        rows.append(
            _row(
                "looks-linear",
                f"feedforward_bn, depth {depth}",
                "SI",
                w,
                float(ff["shattering_index_std"]),
                "He-initialised ReLU net of the same depth shatters",
                np.nan,
                "agrees" if _si_class(w) == "white-like" else "disagrees",
                _si_class(w),
            )
        )
    return rows


def _markdown_table(table: pd.DataFrame) -> str:
    lines = [
        "| # | experiment | item | quantity | measured (± std over seeds) | paper | verdict "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(table.itertuples(index=False), start=1):
        verdict = f"**{r.verdict}**" if r.verdict == "disagrees" else r.verdict
        lines.append(
            f"| {i} | {r.section} | {r.item} | {r.quantity} | {r.shown} | {r.paper} "
            f"| {verdict} | {r.note} |"
        )
    return "\n".join(lines)


def _decay_table(ds: xr.Dataset) -> str:
    lines = [
        "| architecture | L | measured ± std | theory | ratio | per-block product |",
        "|---|---|---|---|---|---|",
    ]
    for name in (str(a) for a in ds[ARCH].values):
        one = ds.sel({ARCH: name}).dropna(DEPTH, subset=["measured"])
        for depth in one[DEPTH].values:
            p = one.sel({DEPTH: depth})
            m, s, t = (float(p[k]) for k in ("measured", "measured_std", "theory"))
            b = float(p["theory_blockwise"])
            lines.append(
                f"| {name} | {int(depth)} | {_pm(m, s)} | {t:.3g} | {m / t:.3g} | "
                f"{'—' if not np.isfinite(b) else f'{b:.3g}'} |"
            )
    return "\n".join(lines)


def _disagreements(table: pd.DataFrame) -> list[str]:
    out = []
    for r in table[table["verdict"] == "disagrees"].itertuples(index=False):
        if np.isfinite(r.predicted):
            text = (
                f"{r.item}: {r.quantity} measured {r.shown} vs predicted "
                f"{r.predicted:.3g} ({r.paper})"
            )
        else:
            text = f"{r.item}: {r.quantity} measured {r.shown}; paper: {r.paper}"
        out.append(f"- {text}; {r.note}." if r.note else f"- {text}.")
    return out


def _report_markdown(
    results: Mapping[str, xr.Dataset],
    table: pd.DataFrame,
    settings: Mapping[str, Any],
    timings: Mapping[str, float],
) -> str:
    fig1 = results["figure1"]
    decay_ds = results["decay"]
    total = sum(timings.values())
    disagree = _disagreements(table)
    sections = [
        "# shatterkit: reproduction of Balduzzi et al. (2017), *The Shattered Gradients Problem*",
        "",
        f"Run: {'quick' if settings['quick'] else 'full'} settings, {settings['seeds']} seeds per "
        f"ensemble, grid of {fig1.sizes[SAMPLE]} points on [-2, 2], width {fig1.attrs['width']}, "
        f"torch {torch.__version__}, {platform.python_implementation()} "
        f"{platform.python_version()}, device {settings['device']}, {total:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}).",
        "",
        "## Setup choices",
        "",
        "- **First figure:** the 24-layer net is shown with **mean-centring** (the paper's caption "
        "as PAPER.md recalls it) *and* with **batch norm** (PAPER.md: which one is uncertain); "
        "both columns are in `figure1.png` and both rows below. The 1-layer net has N(0, 1) "
        "biases (a bias-free ReLU net with a scalar input has a two-valued gradient; centring "
        "the first layer does nothing on a grid symmetric about 0). The resnet has batch norm.",
        "- Batch norm and centring use the statistics of the whole probed set "
        '(`batchnorm="population"`), so each gradient is that of its own input.',
        "- Networks without normalisation get biases on the grid: feedforward nets N(0, 1) on "
        "every hidden layer, resnets N(0, 1) on the stem (the resnet builder has no bias "
        "option).",
        f"- **Theorems' regime** (decay): {decay_ds.attrs['n']} standard Gaussian inputs in "
        f"{decay_ds.attrs['in_features']} dimensions (nearly orthogonal), no biases, batch norm "
        "over the probed set; the measured correlation is, per seed, the cosine similarity of two "
        "inputs' gradients averaged over all pairs. Networks without BN are measured in the same "
        "setting and compared with the same formulas, to show how far they drift.",
        f"- Verdicts: a number agrees with a prediction within {REL_TOL:.0%} or two standard "
        "errors (std over seeds / sqrt(seeds)); a shattering index (SI = 1 - lag-1 "
        f"autocorrelation) <= {BROWN_LIKE} is brown-like, >= {WHITE_LIKE} white-like.",
        "",
        "## Measured vs the paper",
        "",
        _markdown_table(table),
        "",
        "## Where measurement and paper disagree",
        "",
        *(disagree or ["- Nowhere, at the tolerances above."]),
        "",
        "## Gradient correlation against depth (theorems' regime)",
        "",
        "The closed form 1/sqrt(1 + beta² L) for resnets with BN is the large-depth shape of "
        "the product of PAPER.md's per-block factors, prod_l (1 + beta²/(2 v_l)) / "
        "(1 + beta²/v_l), if the skip path's variance grows as v_l = 1 + l beta². Batch norm "
        "divides by the variance over the inputs, and only a share 1 - 1/pi of a ReLU branch's "
        "second moment varies across inputs (the rest is the rectified units' mean), so here "
        f"v_l = v_0 + (1 - 1/pi) l beta² with v_0 = {decay_ds.attrs['stem_variance']:.3f} (the "
        "stem's output). The last column is that product (our derivation, not the paper's); it "
        "decays as L^-0.73 at large depth instead of L^-1/2.",
        "",
        _decay_table(decay_ds),
        "",
        "## Files",
        "",
        *(f"- `{name}`" for name in settings["files"]),
        "",
    ]
    return "\n".join(sections)


@dataclass
class Report:
    """What :func:`run` produced: the Datasets, the comparison table and the files written.

    Every field is also written to ``out``: the Datasets as netCDF, the table in
    ``report.md``.

    Parameters
    ----------
    out : pathlib.Path
        The output directory.
    results : dict of str to xarray.Dataset
        ``figure1``, ``depth_sweep``, ``decay``, ``coactivation`` and ``looks_linear``.
    table : pandas.DataFrame
        One row per comparison: ``section``, ``item``, ``quantity``, ``measured``, ``spread``
        (std over seeds), ``paper`` (the prediction in words), ``predicted`` (a number, NaN when
        the paper's claim is qualitative), ``verdict`` (``"agrees"``, ``"disagrees"``,
        ``"reference"`` or ``"not stated"``) and ``note``.
    files : dict of str to pathlib.Path
        Every file written, by name: the PNG figures, the netCDF files and ``report.md``.
    timings : dict of str to float
        Seconds per step.
    settings : dict
        The settings used (``quick``, ``seeds``, ``device``, ...).
    markdown : str
        The text of ``report.md``.

    See Also
    --------
    run : Makes one.

    Examples
    --------
    >>> import pandas as pd
    >>> from shatterkit.reproduce import Report
    >>> table = pd.DataFrame({"item": ["1 layer", "24 layers"], "verdict": ["agrees", "disagrees"]})
    >>> report = Report("results", {}, table, {}, {}, {}, "")
    >>> report.disagreements["item"].tolist()
    ['24 layers']
    """

    out: Path
    results: dict[str, xr.Dataset]
    table: pd.DataFrame
    files: dict[str, Path]
    timings: dict[str, float]
    settings: dict[str, Any]
    markdown: str

    @property
    def disagreements(self) -> pd.DataFrame:
        """The rows of :attr:`table` whose verdict is ``"disagrees"``."""
        return self.table[self.table["verdict"] == "disagrees"]


_FULL = {
    "seeds": 20,
    "n": 256,
    "sweep_depths": (1, 2, 4, 8, 16, 24, 32, 50),
    "feedforward_depths": (1, 2, 3, 4, 5, 6, 8),
    "resnet_depths": (1, 2, 4, 8, 16, 32, 64),
    "coactivation_depth": 24,
    "looks_linear_depths": (24, 200),
}
_QUICK = {
    "seeds": 3,
    "n": 256,
    "sweep_depths": (1, 4, 16, 50),
    "feedforward_depths": (1, 2, 3, 4, 6),
    "resnet_depths": (1, 2, 4, 8, 16, 32),
    "coactivation_depth": 8,
    "looks_linear_depths": (24,),
}


def _steps(s: Mapping[str, Any], device: Any) -> Iterator[tuple[str, Callable[[], xr.Dataset]]]:
    seeds, n = s["seeds"], s["n"]
    yield "figure1", partial(figure1, n=n, seeds=seeds, device=device)
    yield "depth_sweep", partial(depth_sweep, s["sweep_depths"], n=n, seeds=seeds, device=device)
    yield (
        "decay",
        partial(
            decay,
            feedforward_depths=s["feedforward_depths"],
            resnet_depths=s["resnet_depths"],
            seeds=seeds,
            device=device,
        ),
    )
    yield (
        "coactivation",
        partial(coactivation, s["coactivation_depth"], n=n, seeds=seeds, device=device),
    )
    yield (
        "looks_linear",
        partial(looks_linear, s["looks_linear_depths"], n=n, seeds=seeds, device=device),
    )


def run(
    out: str | Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    device: Any = None,
    progress: bool | None = None,
) -> Report:
    """Run every experiment, write the figures, the data and ``report.md`` into ``out``.

    Calls :func:`figure1`, :func:`depth_sweep`, :func:`decay`, :func:`coactivation` and
    :func:`looks_linear`; writes ``<name>.png`` (matplotlib, Agg) and ``<name>.nc`` (netCDF,
    engine :data:`NETCDF_ENGINE`) for each, and ``report.md``: a table with each measured number
    beside the paper's prediction, the spread over seeds, and a plain list of disagreements.
    The default settings take a few minutes on 2 CPU cores; ``quick`` well under one.

    Parameters
    ----------
    out : str or path-like
        Output directory, created if needed; existing files of the same names are replaced.
    quick : bool, default False
        Fewer seeds (3), grid points (128) and depths: a smoke run in seconds.
    seeds : int, optional
        Ensemble size of every experiment; default 20 (3 with ``quick``).
    device : str or torch.device, optional
        Where the probes run (e.g. ``"cuda"``); default where the models are (CPU).
    progress : bool, optional
        Show a tqdm progress bar over the steps; default: when stderr is a terminal.

    Returns
    -------
    Report
        The Datasets, the comparison table, the files written and the time per step.

    See Also
    --------
    shatterkit.cli.main : ``shatterkit reproduce`` on the command line.

    Examples
    --------
    >>> from shatterkit.reproduce import run
    >>> report = run("results", quick=True)  # doctest: +SKIP
    >>> report.disagreements[["item", "quantity", "measured", "paper"]]  # doctest: +SKIP

    (Skipped as a doctest: the quick run takes about half a minute; ``tests/test_reproduce.py``
    runs it once.)
    """
    from tqdm.auto import tqdm

    caller = "run"
    if not isinstance(quick, (bool, np.bool_)):
        raise param_error("quick", caller, "a bool", quick, exc=TypeError)
    settings: dict[str, Any] = dict(_QUICK if quick else _FULL)
    if seeds is not None:
        if isinstance(seeds, (bool, np.bool_)) or not isinstance(seeds, (int, np.integer)):
            raise param_error("seeds", caller, "None or an int >= 2", seeds, exc=TypeError)
        if seeds < 2:
            raise param_error("seeds", caller, "None or an int >= 2", seeds)
        settings["seeds"] = int(seeds)
    settings.update(quick=bool(quick), device=str(device) if device is not None else "cpu")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    steps = list(_steps(settings, device))
    results: dict[str, xr.Dataset] = {}
    timings: dict[str, float] = {}
    files: dict[str, Path] = {}
    bar = tqdm(
        total=2 * len(steps) + 1,
        desc="shatterkit reproduce",
        unit="step",
        disable=True if progress is False else None if progress is None else False,
    )
    with bar:
        for name, step in steps:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            results[name] = step()
            timings[name] = time.perf_counter() - start
            bar.update()
        for name, ds in results.items():
            bar.set_postfix_str(f"figures and data of {name}")
            start = time.perf_counter()
            for stem, draw in _FIGURES[name].items():
                files[f"{stem}.png"] = out / f"{stem}.png"
                _save(draw(ds), files[f"{stem}.png"])
            files[f"{name}.nc"] = out / f"{name}.nc"
            ds.to_netcdf(files[f"{name}.nc"], engine=NETCDF_ENGINE)
            timings["figures and netCDF"] = (
                timings.get("figures and netCDF", 0.0) + time.perf_counter() - start
            )
            bar.update()
        bar.set_postfix_str("report.md")
        table = pd.DataFrame(
            _figure1_rows(results["figure1"])
            + _sweep_rows(results["depth_sweep"])
            + _decay_rows(results["decay"])
            + _coactivation_rows(results["coactivation"])
            + _looks_linear_rows(results["looks_linear"])
        )
        files["report.md"] = out / "report.md"
        settings["files"] = list(files)
        markdown = _report_markdown(results, table, settings, timings)
        files["report.md"].write_text(markdown, encoding="utf-8")
        bar.update()
    return Report(out, results, table, files, timings, settings, markdown)
