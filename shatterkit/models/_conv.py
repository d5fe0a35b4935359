"""Convolutional counterparts of the paper's networks, for image inputs."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from shatterkit.models._init import check_int, conv3x3, linear, make_generator
from shatterkit.models._mlp import HE_GAIN, READOUT_GAIN, hidden_layers, residual_blocks


def convnet(
    depth: int,
    channels: int = 16,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    batchnorm: bool = False,
    residual: bool = False,
    beta: float = 1.0,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A rectifier convnet with He initialisation: plain or residual, with or without BN.

    Plain (``residual=False``): ``depth`` layers ``Conv3x3 -> [BatchNorm2d] -> ReLU``, the first
    reading ``in_channels``. Residual: a 3×3 conv ``stem`` to ``channels``, then ``depth``
    pre-activation blocks ``x + beta * Conv3x3(ReLU([BN](x)))`` (as in :func:`resnet`). Both end
    with global average pooling and a linear ``readout`` to ``num_classes`` logits. Convolutions
    are bias-free with 'same' padding; their weights are drawn from N(0, 2 / fan_in) with
    fan_in = 9 × input channels (He), the readout's from N(0, 1 / fan_in).

    Parameters
    ----------
    depth : int
        Number of conv layers (plain) or residual blocks (residual).
    channels : int, default 16
        Channels of every hidden layer.
    in_channels : int, default 3
        Channels of the input images.
    num_classes : int, default 10
        Number of outputs.
    batchnorm : bool, default False
        Put a :class:`torch.nn.BatchNorm2d` before each ReLU.
    residual : bool, default False
        Build residual blocks instead of a plain stack.
    beta : float, default 1.0
        Scale of the residual branches (ignored unless ``residual``).
    seed : int or None, default None
        Seed of the local generator that draws every weight; None draws fresh OS entropy.
    dtype : torch.dtype, default torch.float32
        Dtype of the parameters and buffers.

    Returns
    -------
    torch.nn.Sequential
        Plain: children ``layers`` (each with ``conv``, optionally ``norm``, and ``relu``),
        ``pool``, ``flatten``, ``readout``. Residual: ``stem``, ``blocks`` (each a
        :class:`ResidualBlock` with optionally ``norm``, then ``relu`` and ``conv``), ``pool``,
        ``flatten``, ``readout``.

    See Also
    --------
    feedforward : The fully connected feedforward network.
    resnet : The fully connected residual network.

    Examples
    --------
    >>> import torch
    >>> net = convnet(2, channels=4, residual=True, batchnorm=True, seed=0)
    >>> net(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    >>> [name for name, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    ['blocks.0.relu', 'blocks.1.relu']
    """
    check_int(depth, "depth", "convnet", 0)
    check_int(channels, "channels", "convnet", 1)
    gen = make_generator(seed)

    def make_conv(fan_in: int, fan_out: int) -> nn.Module:
        return conv3x3(fan_in, fan_out, gain=HE_GAIN, gen=gen, dtype=dtype)

    make_norm = (lambda: nn.BatchNorm2d(channels, dtype=dtype)) if batchnorm else None
    body: OrderedDict[str, nn.Module] = OrderedDict()
    if residual:
        body["stem"] = make_conv(in_channels, channels)
        body["blocks"] = residual_blocks(
            depth, channels, beta=beta, kind="conv", make_layer=make_conv, make_norm=make_norm
        )
    else:
        body["layers"] = hidden_layers(
            depth, in_channels, channels, kind="conv", make_layer=make_conv, make_norm=make_norm
        )
    features = channels if residual or depth else in_channels
    body["pool"] = nn.AdaptiveAvgPool2d(1)
    body["flatten"] = nn.Flatten()
    body["readout"] = linear(features, num_classes, gain=READOUT_GAIN, gen=gen, dtype=dtype)
    return nn.Sequential(body)
