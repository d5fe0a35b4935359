"""Functional ops that couple the samples of a batch, written so the probes can see them.

``torch.nn.functional.batch_norm`` is the main one; :func:`center` (mean-centring, the paper's
"subtract each unit's mean over the batch") is the other. Both dispatch through
``__torch_function__``, so the probes' function mode can replace their batch statistics with the
population statistics of the probed set.
"""

from __future__ import annotations

import torch
from torch.overrides import handle_torch_function, has_torch_function_unary


def center(
    input: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
) -> torch.Tensor:
    """Subtract each unit's mean over the batch (dim 0 and any spatial dims).

    Parameters
    ----------
    input : torch.Tensor
        Activations of shape ``(batch, units, *spatial)``.
    running_mean : torch.Tensor, optional
        Buffer of shape ``(units,)``; updated in place (exponential average) in training mode and
        used instead of the batch mean otherwise.
    training : bool
        Use the batch mean (True) or ``running_mean`` (False).
    momentum : float
        Weight of the new batch mean in the running average.

    Returns
    -------
    torch.Tensor
        ``input`` minus the mean, same shape.

    Examples
    --------
    >>> import torch
    >>> from shatterkit._functional import center
    >>> center(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    tensor([[-1., -2.],
            [ 1.,  2.]])
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            center, (input,), input, running_mean, training=training, momentum=momentum
        )
    reduce = [0, *range(2, input.dim())]
    shape = [1, -1] + [1] * (input.dim() - 2)
    if training or running_mean is None:
        mean = input.mean(reduce)
        if training and running_mean is not None:
            with torch.no_grad():
                running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
    else:
        mean = running_mean
    return input - mean.reshape(shape)
