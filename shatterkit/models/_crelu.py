"""Concatenated ReLU and the looks-linear initialisation."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from shatterkit.models._init import check_int, make_generator


class CReLU(nn.Module):
    """Concatenated rectifier: ``relu(cat([x, -x], dim))``, which doubles the size of ``dim``.

    It calls :func:`torch.nn.functional.relu` exactly once per forward, so activation probes see
    one rectifier call per CReLU, named after the module, whose ``2 * n`` units are the positive
    halves followed by the negative ones.

    Parameters
    ----------
    dim : int, default 1
        The dim along which ``x`` and ``-x`` are concatenated.

    See Also
    --------
    looks_linear : CReLU nets with the looks-linear initialisation.

    Examples
    --------
    >>> import torch
    >>> CReLU()(torch.tensor([[1.0, -2.0]]))
    tensor([[1., 0., 0., 2.]])
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([x, -x], self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _orthogonal(
    in_features: int,
    out_features: int,
    *,
    mirrored: bool,
    gen: torch.Generator,
    dtype: torch.dtype,
) -> nn.Linear:
    """Bias-free linear layer with an orthogonal weight W, or ``[W, -W]`` if ``mirrored``.

    A mirrored layer reads ``2 * in_features`` CReLU outputs.
    """
    weight = torch.empty(out_features, in_features, dtype=dtype)
    nn.init.orthogonal_(weight, generator=gen)
    if mirrored:
        weight = torch.cat([weight, -weight], 1)
    layer = nn.utils.skip_init(nn.Linear, weight.shape[1], out_features, bias=False, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def looks_linear(
    depth: int,
    width: int = 200,
    *,
    in_features: int = 1,
    out_features: int = 1,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A CReLU net with the looks-linear initialisation: it computes a linear map at init.

    ``depth`` hidden layers, each ``Linear -> CReLU``, then a linear readout. The first layer maps
    ``in_features`` to ``width`` with an orthogonal weight; every later layer and the readout
    read the ``2 * width`` CReLU outputs with a mirrored weight ``[W, -W]``, W orthogonal, so that
    ``[W, -W] @ CReLU(h) = W relu(h) - W relu(-h) = W h``. No layer has a bias.

    Parameters
    ----------
    depth : int
        Number of hidden (CReLU) layers; 0 gives an orthogonal readout alone.
    width : int, default 200
        Units per hidden layer before the CReLU doubles them.
    in_features, out_features : int, default 1
        Input and output sizes.
    seed : int or None, default None
        Seed of the local generator that draws every weight; None draws fresh OS entropy.
    dtype : torch.dtype, default torch.float32
        Dtype of the parameters.

    Returns
    -------
    torch.nn.Sequential
        Children ``layers`` (a Sequential of hidden layers with children ``linear`` and
        ``crelu``) and ``readout``.

    See Also
    --------
    CReLU : The concatenated rectifier.
    feedforward : The He-initialised ReLU counterpart.

    Notes
    -----
    At init the network is the linear map ``V W_depth ... W_1``, so its input gradient is the
    same at every input: no shattering at all. Training breaks the mirror symmetry. Orthogonal
    weights keep the norm of the signal, so the gain needs no tuning with depth
    (Balduzzi et al., ICML 2017, arXiv:1702.08591, section on looks-linear initialisation).

    Examples
    --------
    >>> import torch
    >>> net = looks_linear(5, width=4, seed=0, dtype=torch.float64)
    >>> x = torch.tensor([[-1.0], [2.0]], dtype=torch.float64)
    >>> y = net(x).squeeze(1)
    >>> bool(torch.isclose(y[1], -2 * y[0]))
    True
    """
    check_int(depth, "depth", "looks_linear", 0)
    check_int(width, "width", "looks_linear", 1)
    gen = make_generator(seed)
    hidden = [
        nn.Sequential(
            OrderedDict(
                linear=_orthogonal(
                    width if index else in_features, width, mirrored=index > 0, gen=gen, dtype=dtype
                ),
                crelu=CReLU(),
            )
        )
        for index in range(depth)
    ]
    readout = _orthogonal(
        width if depth else in_features, out_features, mirrored=depth > 0, gen=gen, dtype=dtype
    )
    return nn.Sequential(OrderedDict(layers=nn.Sequential(*hidden), readout=readout))
