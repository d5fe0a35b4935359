"""The paper's theorems, measured on the paper's networks in the regime they are stated for.

PAPER.md: the theorems assume distinct inputs whose activation patterns are independent, which
random high-dimensional inputs (nearly orthogonal) with batch norm over the probed set give. There
the feedforward correlation decays as 2^-L and the resnet-with-BN one sublinearly (~L^-1/2).
Without BN the formulas describe the trend only; those measurements are reported, not forced.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from shatterkit import input_gradients, metrics, models, theory

pytestmark = pytest.mark.slow

DEPTHS = [1, 2, 4, 8, 16]
N_INPUTS, IN_FEATURES, N_SEEDS = 48, 64, 4


def pair_correlation(factory, depths=DEPTHS) -> xr.DataArray:
    """Mean correlation of the gradients at distinct inputs, per depth and seed."""
    x = np.random.default_rng(0).standard_normal((N_INPUTS, IN_FEATURES)).astype(np.float32)
    off_diagonal = ~np.eye(N_INPUTS, dtype=bool)
    rows = []
    for depth in depths:
        ens = [factory(depth, seed) for seed in range(N_SEEDS)]
        corr = metrics.gradient_covariance(input_gradients(ens, x), over="features")
        rows.append(corr.values[:, off_diagonal].mean(axis=1))
    return xr.DataArray(
        np.array(rows), dims=("depth", "seed"), coords={"depth": depths}, name="correlation"
    )


@pytest.fixture(scope="module")
def feedforward_bn() -> xr.DataArray:
    torch.set_num_threads(1)
    return pair_correlation(
        lambda L, s: models.feedforward(L, 200, in_features=IN_FEATURES, batchnorm=True, seed=s)
    )


@pytest.fixture(scope="module")
def resnet_bn() -> xr.DataArray:
    # telling a power law from an exponential needs depths over more than a decade
    return pair_correlation(
        lambda L, s: models.resnet(L, 200, in_features=IN_FEATURES, batchnorm=True, seed=s),
        depths=[1, 2, 4, 8, 16, 32, 64],
    )


def test_feedforward_with_bn_decays_as_two_to_the_minus_depth(feedforward_bn):
    measured = feedforward_bn.mean("seed")
    predicted = theory.feedforward_correlation(DEPTHS)
    # measured 0.48, 0.22, 0.05 against 0.5, 0.25, 0.0625 at L = 1, 2, 4: finite width (200) and
    # 48 inputs leave about +-0.03 of noise, far below the gaps between depths
    np.testing.assert_allclose(
        measured.sel(depth=[1, 2, 4]), predicted.sel(depth=[1, 2, 4]), atol=0.04
    )
    fit = metrics.fit_covariance_decay(feedforward_bn.sel(depth=[1, 2, 4, 8]))
    assert fit.attrs["preferred"] == "exponential"
    assert abs(float(fit["exp_r"]) - 0.5) < 0.1


def test_resnet_with_bn_decays_sublinearly(resnet_bn):
    fit = metrics.fit_covariance_decay(resnet_bn)
    assert fit.attrs["preferred"] == "power_law"
    # the theorem's exponent is 1/2; 1..64 blocks measure 0.53
    assert 0.4 < float(fit["pow_alpha"]) < 0.65
    # and at 16 and 64 blocks the values are close to 1/sqrt(1 + L) itself (0.24, 0.12)
    for depth in (16, 64):
        predicted = float(theory.resnet_bn_correlation(depth)[0])
        assert abs(float(resnet_bn.sel(depth=depth).mean()) - predicted) < 0.05


def test_small_beta_keeps_resnet_with_bn_correlated():
    """beta = 0.1: 1/sqrt(1 + beta^2 L) stays near 1 (0.78 at L = 64; measured 0.86)."""
    measured = pair_correlation(
        lambda L, s: models.resnet(
            L, 200, in_features=IN_FEATURES, batchnorm=True, beta=0.1, seed=s
        ),
        depths=[64],
    ).mean("seed")
    predicted = theory.resnet_bn_correlation([64], beta=0.1)
    assert float(measured[0]) > 0.75
    np.testing.assert_allclose(measured.values, predicted.values, atol=0.1)


def test_resnet_with_bn_keeps_far_more_correlation_than_feedforward(feedforward_bn, resnet_bn):
    assert float(resnet_bn.sel(depth=8).mean()) > 50 * max(
        float(feedforward_bn.sel(depth=8).mean()), 1e-3
    )
