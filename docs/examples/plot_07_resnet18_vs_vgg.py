"""
Layer profiles of torchvision's resnet18 and vgg11_bn
=====================================================

Beyond the paper's toy networks: how shattered is the gradient *with respect to each layer's
output* in an image classifier, along a path between two natural images? One backward pass of
:class:`shatterkit.GradientProbe` with ``layers=`` gives the gradient with respect to the input
and to every selected layer; :func:`shatterkit.metrics.shattering_profile` turns it into a
shattering index per layer, plotted against the layer's depth (call order).

The path is 32 images on the straight line from scikit-learn's ``china.jpg`` to ``flower.jpg``
(:func:`shatterkit.vision.image_segment`; the photos ship with scikit-learn).

.. note::

   This example needs torchvision (``pip install shatterkit[vision]``), which the documentation
   build does not install. **Without torchvision it runs on labelled stand-ins instead**:
   :func:`shatterkit.models.convnet` networks of the same two kinds, both with batch norm: a
   residual convnet ("resnet-like") and a plain stack ("VGG-like"). The figure's legend and the
   printed message say which networks were measured. With torchvision installed,
   :func:`shatterkit.vision.load` builds the real models offline: random initialisation by default,
   or ImageNet weights (``weights="DEFAULT"``) read from the torch hub cache.
"""

# %%
# The networks
# ------------
import matplotlib.pyplot as plt
from torch import nn

from shatterkit import GradientProbe, metrics, models, plot, vision

try:
    import torchvision  # noqa: F401
except ImportError:
    print(
        "torchvision is not installed: measuring the stand-ins models.convnet(residual=True, "
        "batchnorm=True) and models.convnet(batchnorm=True) instead of resnet18 and vgg11_bn."
    )
    networks = {
        "resnet-like stand-in (convnet, 8 residual blocks + BN)": models.convnet(
            8, 32, residual=True, batchnorm=True, seed=0
        ),
        "VGG-like stand-in (convnet, 8 plain layers + BN)": models.convnet(
            8, 32, batchnorm=True, seed=0
        ),
    }
else:
    networks = {
        "torchvision resnet18 (random init)": vision.load("resnet18", seed=0)[0],
        "torchvision vgg11_bn (random init)": vision.load("vgg11_bn", seed=0)[0],
    }
SIZE = 64
path = vision.image_segment(n=32, size=SIZE)

# %%
# One probe per network
# ---------------------
# Every ``nn.ReLU`` module is selected; a module called twice per forward (as in torchvision's
# ``BasicBlock``) gives two layers, ``relu`` and ``relu#1``. The scalar differentiated is logit 0.
# Batch norm uses the statistics of the probed path (``batchnorm="population"``, the default).
profiles = {}
for name, net in networks.items():
    relus = [n for n, m in net.named_modules() if isinstance(m, nn.ReLU)]
    grads = GradientProbe(net, output=0, layers=relus).fit_transform(path)
    profiles[name] = metrics.shattering_profile(grads)

fig, ax = plt.subplots(figsize=(8, 4))
plot.profile(profiles, ax=ax, marker="o")
ax.set_title(f"shattering index along china.jpg → flower.jpg ({SIZE} × {SIZE} px, 32 images)")
ax.legend(fontsize="small")
plt.show()

# %%
# The index at depth 0 is the input gradient's; at depth :math:`k` it is the gradient with
# respect to the output of the :math:`k`-th rectifier call, which has the other rectifiers above
# it to cross on its way down from the logit. The last rectifier's gradient is the same at every
# input (only linear layers lie above it: pooling, dropout, the readout): index 0. With
# torchvision, the network without skips shatters about twice as fast per rectifier call
# (:doc:`/guide/torchvision` has the measurements over several seeds and sizes). The numbers
# measured in this build:
for name, profile in profiles.items():
    print(name, profile["shattering_index"].round(3).values.tolist())
