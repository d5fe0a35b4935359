"""
Co-activation and pattern dispersion, with and without BatchNorm and skips
==========================================================================

The activation pattern of an input is the set of rectifiers that are on. A piecewise-linear
network is linear wherever its pattern is constant, so the way patterns spread over the inputs
explains shattering:

* **co-activation** (:func:`shatterkit.metrics.coactivation_rate`): the probability that a unit is
  on for both inputs of a pair. With batch norm each unit is on for half the batch and the
  patterns of distinct inputs are independent: 1/4. Without it, deep nets drift towards units
  that are on (or off) for nearly all inputs: about 1/2.
* **dispersion** (:func:`shatterkit.metrics.pattern_dispersion`): the fraction of units on for
  one input of a pair and off for the other. Over all pairs it says whether distinct inputs use
  different units; between neighbours on a line it says how often the pattern changes from one
  grid point to the next.

Four networks of 32 rectifier layers (width 128): feedforward and resnet, each with and without
batch norm; 4 initialisations each.
"""

# %%
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from shatterkit import activation_patterns, inputs, metrics, models, plot

DEPTH, WIDTH, N_MODELS = 32, 128, 4
networks = {
    "feedforward": partial(models.feedforward, DEPTH, WIDTH),
    "feedforward + BN": partial(models.feedforward, DEPTH, WIDTH, batchnorm=True),
    "resnet": partial(models.resnet, DEPTH, WIDTH),
    "resnet + BN": partial(models.resnet, DEPTH, WIDTH, batchnorm=True),
}

# %%
# Co-activation over random inputs
# --------------------------------
# 128 Gaussian inputs in 64 dimensions: distinct, nearly orthogonal inputs, the regime of the
# paper's theorems. :func:`shatterkit.activation_patterns` records every rectifier call; the
# result has one ``unit`` dim whose coords ``layer`` and ``depth`` say where each unit sits.
X = xr.DataArray(np.random.default_rng(0).standard_normal((128, 64)), dims=("sample", "feature"))
coactivation = {
    name: metrics.coactivation_rate(
        activation_patterns(models.ensemble(partial(f, in_features=64), N_MODELS, seed=0), X)
    )
    for name, f in networks.items()
}

# %%
# Dispersion along the paper's line
# ---------------------------------
# The same architectures with a 1-D input, on 256 points of :math:`[-2, 2]`.
line = inputs.line(-2, 2, 256)
patterns = {
    name: activation_patterns(models.ensemble(f, N_MODELS, seed=0), line)
    for name, f in networks.items()
}
neighbours = {
    name: metrics.pattern_dispersion(p, max_lag=1).sel(lag=1) for name, p in patterns.items()
}
all_pairs = {name: metrics.pattern_dispersion(p) for name, p in patterns.items()}

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
plot.coactivation(coactivation, ax=axes[0])
axes[0].set_title("co-activation, random inputs")
plot.dispersion(all_pairs, ax=axes[1])
axes[1].set_title("dispersion, all pairs on the line")
plot.dispersion(neighbours, ax=axes[2])
axes[2].set_title("dispersion, neighbours on the line")
axes[2].set_yscale("log")
fig.tight_layout()
plt.show()

# %%
# Without batch norm the co-activation climbs from 1/4 towards 1/2 and the dispersion over all
# pairs collapses: deep in the network every input uses nearly the same units, the network is
# close to linear on the data and the inputs' representations have collapsed. With batch norm
# co-activation stays at 1/4 and distinct inputs keep distinct patterns; but the feedforward
# net then changes pattern at almost every step along the line (right panel, about half its
# units flip between neighbouring grid points by layer 32): many tiny linear pieces, which is
# shattering. The resnet with batch norm keeps its patterns locally coherent.
#
# The patterns themselves
# -----------------------
# :func:`shatterkit.plot.patterns` rasters one layer's units (rows) against the inputs
# (columns), black for on. The bias-free nets without batch norm are positively homogeneous in
# their 1-D input: their patterns can change only at :math:`x = 0`.
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), sharey=True)
for ax, (name, p) in zip(axes, patterns.items(), strict=True):
    plot.patterns(p, layer=DEPTH, ax=ax)
    ax.set_title(f"{name}, layer {DEPTH}")
fig.tight_layout()
plt.show()
