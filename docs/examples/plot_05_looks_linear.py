"""
The looks-linear initialisation
===============================

The paper's remedy for shattering without skip connections. A CReLU layer outputs
:math:`[\\mathrm{relu}(x), \\mathrm{relu}(-x)]` (twice the width); initialising the next layer as
:math:`W' = [W, -W]` gives :math:`W' \\,\\mathrm{CReLU}(x) = W \\mathrm{relu}(x) - W \\mathrm{relu}(-x)
= W x`. The whole network computes a linear map at initialisation, so its gradient is the same at
every input: nothing is shattered, however deep. Training then breaks the mirror symmetry.
:func:`shatterkit.models.looks_linear` builds such nets (with orthogonal :math:`W`, as the paper
draws them).
"""

# %%
# Gradients at initialisation
# ---------------------------
# A 24-layer looks-linear net against a 24-layer He-initialised rectifier net (mean-centred, so
# that it can shatter on a 1-D input), on the paper's line.
import matplotlib.pyplot as plt

from shatterkit import input_gradients, inputs, metrics, models, plot
from shatterkit.experiments import plot_trainability, trainability

x = inputs.line(-2, 2, 256)
grads = {
    "looks-linear (CReLU)": input_gradients(models.looks_linear(24, 200, seed=0), x),
    "He init (ReLU, centred)": input_gradients(
        models.feedforward(24, 200, centering=True, seed=0), x
    ),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for ax, (name, ds) in zip(axes, grads.items(), strict=True):
    plot.gradients(ds, ax=ax)
    index = float(metrics.shattering_index(ds)["shattering_index"])
    ax.set_title(f"{name}: shattering index {index:.2f}")
fig.tight_layout()
plt.show()

# %%
# Training deep nets without skips
# --------------------------------
# The paper trains ~200-layer CReLU nets with looks-linear initialisation and no skip connections
# on CIFAR-10, and finds that they train about as well as resnets while plain He-initialised nets
# degrade with depth. :func:`shatterkit.experiments.trainability` runs the same comparison at CPU
# scale on scikit-learn's digits (8 × 8 images, nothing downloaded): MLPs of 50 and 100 rectifier
# layers (width 64, no normalisation), trained with Adam; ``quick=True`` keeps it to 150 steps.
# The shattering index is measured along a path of 128 images morphing a 3 into an 8.
ds = trainability((50, 100), quick=True, seed=0)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
plot_trainability(ds, var="test_accuracy", ax=axes[0])
plot_trainability(ds, var="shattering_index", ax=axes[1])
axes[0].set_title("test accuracy")
axes[1].set_title("shattering index along the 3 → 8 path")
fig.tight_layout()
plt.show()

# %%
# The looks-linear nets start linear (index 0) and stay smooth while they learn; the plain
# He-initialised nets start shattered and learn slowly, if at all. Final test accuracy:
print(ds["test_accuracy"].isel(step=-1).to_pandas().round(3))
