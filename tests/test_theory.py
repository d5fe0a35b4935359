"""Closed-form predictions, checked against a Monte Carlo of the theorems' own model."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from shatterkit import theory

DEPTHS = [1, 2, 3, 4]


def simulate_correlation(
    depth: int, beta: float | None, *, width: int = 64, trials: int = 4000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo of the theorems' independence model, written without the library.

    Backpropagates the readout vector through ``depth`` layers of He-initialized weights
    (N(0, 2 / width)) for two inputs that share the weights but whose rectifiers are on
    independently with probability 1/2 (the model behind the theorems). ``beta=None`` is a
    feedforward net (delta <- D W^T delta); otherwise a resnet without BN
    (delta <- delta + beta D W^T delta). Returns, for depths 1..depth, the correlation
    E[<d_i, d_j>] / sqrt(E|d_i|^2 E|d_j|^2) over trials and its standard error.
    """
    rng = np.random.default_rng(seed)
    readout = rng.normal(size=(trials, 1, width))
    di = dj = readout
    rho, stderr = [], []
    for _ in range(depth):
        w = rng.normal(0.0, np.sqrt(2 / width), size=(trials, width, width))
        on_i = rng.random((trials, 1, width)) < 0.5
        on_j = rng.random((trials, 1, width)) < 0.5
        bi, bj = on_i * (di @ w), on_j * (dj @ w)
        di, dj = (bi, bj) if beta is None else (di + beta * bi, dj + beta * bj)
        cross = (di * dj).sum((1, 2))
        scale = np.sqrt((di**2).sum((1, 2)).mean() * (dj**2).sum((1, 2)).mean())
        rho.append(cross.mean() / scale)
        stderr.append(cross.std() / np.sqrt(trials) / scale)
    return np.array(rho), np.array(stderr)


def test_feedforward_formula_matches_monte_carlo() -> None:
    rho, stderr = simulate_correlation(max(DEPTHS), None)
    predicted = theory.feedforward_correlation(DEPTHS).values
    # 4 standard errors (of the cross term; the normalizer's error is smaller)
    assert np.all(np.abs(rho - predicted) < 4 * stderr + 1e-3), (rho, predicted, stderr)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_resnet_formula_matches_monte_carlo(beta: float) -> None:
    rho, stderr = simulate_correlation(max(DEPTHS), beta, seed=1)
    predicted = theory.resnet_correlation(DEPTHS, beta=beta).values
    assert np.all(np.abs(rho - predicted) < 4 * stderr + 1e-3), (rho, predicted, stderr)


def test_values() -> None:
    depth = np.arange(0, 6)
    np.testing.assert_allclose(theory.feedforward_correlation(depth), 2.0**-depth)
    np.testing.assert_allclose(theory.resnet_correlation(depth), 0.75**depth)
    np.testing.assert_allclose(theory.resnet_correlation(depth, beta=0.0), 1.0)
    np.testing.assert_allclose(
        theory.resnet_correlation(depth, beta=2.0), (3 / 5) ** depth, rtol=1e-12
    )
    np.testing.assert_allclose(theory.resnet_bn_correlation(depth), 1 / np.sqrt(1 + depth))
    np.testing.assert_allclose(
        theory.resnet_bn_correlation(depth, beta=0.5), 1 / np.sqrt(1 + depth / 4)
    )
    assert theory.coactivation_bn() == 0.25
    assert theory.coactivation_feedforward() == 0.5


def test_resnet_bn_decay_is_sublinear() -> None:
    depth = np.array([10, 100, 1000])
    rho = theory.resnet_bn_correlation(depth).values
    np.testing.assert_allclose(rho * np.sqrt(depth), 1, rtol=0.06)  # ~ L**-1/2
    # bounded away from 0 when beta ~ 1 / sqrt(L)
    assert theory.resnet_bn_correlation(1000, beta=1 / np.sqrt(1000)).item() > 0.7


@pytest.mark.parametrize(
    "predict",
    [theory.feedforward_correlation, theory.resnet_correlation, theory.resnet_bn_correlation],
)
def test_labels(predict, tmp_path) -> None:
    out = predict([0, 3, 7])
    assert out.dims == ("depth",)
    assert out["depth"].values.tolist() == [0, 3, 7]
    assert out.name == "gradient_correlation"
    assert {"long_name", "units", "formula", "reference", "architecture"} <= set(out.attrs)
    assert "PAPER.md" in out.attrs["reference"]
    assert predict(5).dims == ("depth",) and predict(5).sizes["depth"] == 1
    out.to_netcdf(tmp_path / "theory.nc", engine="h5netcdf")
    with xr.open_dataarray(tmp_path / "theory.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), out)


def test_errors() -> None:
    with pytest.raises(
        ValueError,
        match=r"The 'depth' parameter of feedforward_correlation must be a non-negative int or a 1-D sequence of them\. Got -1 instead\.",
    ):
        theory.feedforward_correlation(-1)
    with pytest.raises(
        TypeError,
        match=r"The 'depth' parameter of resnet_correlation must be a non-negative int or a 1-D sequence of them\. Got 1\.5 instead\.",
    ):
        theory.resnet_correlation(1.5)
    with pytest.raises(
        TypeError,
        match=r"The 'depth' parameter of resnet_bn_correlation must be a non-negative int or a 1-D sequence of them\. Got \[\] instead\.",
    ):
        theory.resnet_bn_correlation([])
    with pytest.raises(
        ValueError,
        match=r"The 'beta' parameter of resnet_correlation must be a finite float >= 0\. Got -0\.5 instead\.",
    ):
        theory.resnet_correlation(3, beta=-0.5)
    with pytest.raises(
        TypeError,
        match=r"The 'beta' parameter of resnet_bn_correlation must be a finite float >= 0\. Got '1' instead\.",
    ):
        theory.resnet_bn_correlation(3, beta="1")
