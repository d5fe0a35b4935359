"""Independently initialised copies of a model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from shatterkit.models._init import check_int


def ensemble(factory: Callable[..., nn.Module], n: int, seed: int | None = None) -> list[nn.Module]:
    """Build ``n`` independently initialised models with ``factory(seed=...)``.

    The member seeds are spawned from ``numpy.random.SeedSequence(seed)``, so the same ``seed``
    gives the same ensemble, and members are statistically independent. Pass the list to a probe
    to get results with a ``model`` dim.

    Parameters
    ----------
    factory : callable
        Called as ``factory(seed=s)`` with an int ``s``; for example
        ``functools.partial(feedforward, 24, batchnorm=True)``.
    n : int
        Number of members.
    seed : int or None, default None
        Root seed; None draws fresh OS entropy.

    Returns
    -------
    list of torch.nn.Module
        The ``n`` members, in order.

    See Also
    --------
    feedforward, resnet, looks_linear, convnet : Factories to use.

    Examples
    --------
    >>> from functools import partial
    >>> import torch
    >>> from shatterkit.models import feedforward
    >>> nets = ensemble(partial(feedforward, 2, width=4), 3, seed=0)
    >>> len(nets)
    3
    >>> bool(torch.equal(nets[0].readout.weight, nets[1].readout.weight))
    False
    """
    check_int(n, "n", "ensemble", 1)
    children = np.random.SeedSequence(seed).spawn(n)
    return [factory(seed=int(child.generate_state(1, np.uint64)[0])) for child in children]
