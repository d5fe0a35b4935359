"""
Gradients and their covariance: feedforward, resnet, brown and white noise
==========================================================================

The paper's first figure. A network with one input and one output is evaluated on 256 equally
spaced points of :math:`[-2, 2]` and its derivative :math:`g_i = df/dx(x_i)` is plotted against
the grid index (top row). Below each gradient is the correlation matrix of the gradients at every
pair of grid points, :math:`\\rho(i, j)`, taken over an ensemble of random initialisations.

* a 1-layer rectifier net (200 units) wanders like **brown noise** (a random walk);
* a 24-layer feedforward net has **shattered**: its gradient is close to **white noise**, and the
  correlation matrix is concentrated on the diagonal;
* a 50-block resnet sits in between, much closer to brown noise.

The 24-layer net subtracts each unit's mean over the probed set before the rectifier
(``centering=True``) and the resnet uses batch normalization, as in the paper. A bias-free ReLU
net with neither is positively homogeneous: on a 1-D input its gradient takes only two values,
whatever its depth, so it cannot shatter along the line (see :doc:`/guide/batchnorm`). The
1-layer net gets biases drawn from :math:`N(0, 1)` instead (``bias=True``), which spread its 200
kinks over the line; centring it would put every kink at the mean input, :math:`x = 0`.
"""

# %%
# Probe three architectures on the paper's line
# ---------------------------------------------
# :func:`shatterkit.models.ensemble` builds independently seeded copies of a network; passing the
# list to :func:`shatterkit.input_gradients` gives a gradient Dataset with a ``model`` dim. The
# paper averages over more initialisations; 12 keep this page fast.
from functools import partial

import matplotlib.pyplot as plt

from shatterkit import input_gradients, inputs, metrics, models, noise, plot

N_MODELS = 12
x = inputs.line(-2, 2, 256)

networks = {
    "1 layer": partial(models.feedforward, 1, 200, bias=True),
    "24 layers": partial(models.feedforward, 24, 200, centering=True),
    "resnet, 50 blocks": partial(models.resnet, 50, 200, batchnorm=True),
}
panels = {
    name: input_gradients(models.ensemble(factory, N_MODELS, seed=0), x)
    for name, factory in networks.items()
}
panels["brown noise"] = noise.brown(256, n_models=N_MODELS, seed=0)
panels["white noise"] = noise.white(256, n_models=N_MODELS, seed=0)
panels["24 layers"]

# %%
# The figure
# ----------
# :func:`shatterkit.metrics.gradient_covariance` correlates the gradients at every pair of
# samples over the ensemble (``over="model"``, the expectation of the paper's theorems);
# :func:`shatterkit.plot.figure1` lays the panels out as in the paper.
correlations = {name: metrics.gradient_covariance(ds) for name, ds in panels.items()}
fig = plot.figure1(panels, correlations, figsize=(13, 5.5))
for ax in fig.axes[1 : len(panels)]:
    ax.set_ylabel("")  # one gradient label for the row
fig.axes[0].set_ylabel("gradient df/dx")
plt.show()

# %%
# One number per panel
# --------------------
# The shattering index :math:`1 - \rho(1)` (one minus the lag-1 autocorrelation of the gradient
# along the line) is about 0 for brown noise and 1 for white noise.
for name, ds in panels.items():
    index = metrics.shattering_index(ds)
    print(
        f"{name:>18}: {float(index['shattering_index']):.3f}"
        f" ± {float(index['shattering_index_std']):.3f}"
    )
