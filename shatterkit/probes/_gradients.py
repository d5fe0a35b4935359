"""Per-sample input gradients (and layer-output gradients) from one batched backward pass."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch
import xarray as xr
from sklearn.utils._param_validation import Interval

from shatterkit._dims import DEPTH, GRADIENT, LAYER, LAYER_GRADIENT_PREFIX, OUTPUT, input_dims
from shatterkit.probes._base import BaseProbe, resolve_layers
from shatterkit.probes._engine import (
    BATCHNORM_MODES,
    build_dataset,
    check_finite_gradients,
    chunks,
    describe_output,
    forward,
    iterate_models,
    prepare_inputs,
    probe_session,
    progress_bar,
    select_output,
    to_device,
    unwrap_model,
)

__all__ = ["input_gradients", "GradientProbe"]

_CALLER = "input_gradients"


def input_gradients(
    model: Any,
    X: Any,
    *,
    output: Any = None,
    layers: Any = None,
    batchnorm: str = "population",
    batch_size: int | str = 256,
    device: Any = None,
    progress: bool | None = None,
) -> xr.Dataset:
    r"""Per-sample gradient of a scalar output with respect to each input (and layer outputs).

    For every sample :math:`i`, :math:`g_i = \partial y_i / \partial x_i`, computed for a whole
    batch by one forward and one backward pass of :math:`\sum_i y_i` (the samples do not interact,
    see ``batchnorm``).

    Parameters
    ----------
    model : torch.nn.Module or sequence of torch.nn.Module
        The network, or an ensemble of networks of the same signature (e.g. independent random
        initialisations): the result then has a leading ``model`` dim.
    X : xarray.DataArray, torch.Tensor or array-like
        Inputs with the samples along the first axis (dim ``sample``), e.g. from
        :mod:`shatterkit.inputs`. Coords (such as the path parameter ``t``) are carried through.
    output : None, int or callable
        The scalar :math:`y_i`: ``None`` for a model with one output per sample, an int for that
        unit of the flattened output, or a callable mapping the model's output to shape ``(n,)``.
    layers : None, "all" or list of str
        Module names whose output gradients :math:`\partial y_i / \partial h_i` are returned too
        (``"all"``: every module without children), from the same backward pass.
    batchnorm : {"population", "coupled", "eval"}
        Batch statistics used by every ``F.batch_norm`` call (and mean-centring):
        ``"population"``: mean and biased variance of the layer's input over the whole probed set,
        held fixed while differentiating, so each sample's gradient is its own and does not depend
        on ``batch_size``. ``"coupled"``: the whole set is one batch and the gradient flows through
        the batch statistics, as on a training batch (the result is the gradient of
        :math:`\sum_j y_j` with respect to :math:`x_i`). ``"eval"``: the running statistics.
        Running statistics are never updated.
    batch_size : int or "auto"
        Samples per forward/backward pass; ``"auto"`` fits a quarter of the free device memory.
    device : str or torch.device, optional
        Run on a copy of the model on this device; default: where the model's parameters are.
    progress : bool, optional
        Show a progress bar; default: only on a terminal and for more than one batch.

    Returns
    -------
    xarray.Dataset
        ``gradient`` (dims ``sample`` + the input's dims), ``output`` (``sample``), and one
        ``gradient:<layer>`` variable per selected layer; see ``docs/schema.md``.

    See Also
    --------
    GradientProbe : The same as a scikit-learn estimator.

    Notes
    -----
    Dropout (module or functional) is the identity while probing, and the model is left exactly
    as it was: train/eval flags, buffers, hooks and ``requires_grad``.

    Examples
    --------
    >>> import torch
    >>> from shatterkit import inputs, input_gradients
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.fill_(3.0)
    >>> ds = input_gradients(net, inputs.line(n=4))
    >>> ds["gradient"].values.ravel().tolist()
    [3.0, 3.0, 3.0, 3.0]
    """
    members, ensemble = iterate_models(model, _CALLER)
    inputs = prepare_inputs(X, _CALLER)
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(
            f"The 'batchnorm' parameter of {_CALLER} must be one of {BATCHNORM_MODES}. "
            f"Got {batchnorm!r} instead."
        )
    if not (batch_size == "auto" or (isinstance(batch_size, Integral) and batch_size >= 1)):
        raise ValueError(
            f"The 'batch_size' parameter of {_CALLER} must be an int in the range [1, inf) or "
            f"'auto'. Got {batch_size!r} instead."
        )
    names = resolve_layers(unwrap_model(members[0]), layers, _CALLER)
    runs = [
        _one_model(m, inputs, output, names, batchnorm, batch_size, device, progress)
        for m in members
    ]
    per_model = [r[0] for r in runs]
    device_used, dtype_used = runs[0][1]
    variables = {
        key: (dims, [pm[key][1] for pm in per_model], attrs)
        for key, (dims, _, attrs) in per_model[0].items()
    }
    n_bad = check_finite_gradients(
        np.concatenate([v.ravel() for pm in per_model for k, (_, v, _) in pm.items() if k != OUTPUT]),
        _CALLER,
    )
    return build_dataset(
        variables,
        inputs,
        ensemble,
        attrs={
            "model_class": type(unwrap_model(members[0])).__name__,
            "output": describe_output(output),
            "batchnorm": batchnorm,
            "dtype": dtype_used,
            "device": device_used,
            "n_nonfinite": n_bad,
            "history": f"shatterkit.input_gradients(batchnorm={batchnorm!r}, layers={layers!r})",
        },
    )


def _one_model(
    model: torch.nn.Module,
    inputs: Any,
    output: Any,
    names: list[str],
    batchnorm: str,
    batch_size: int | str,
    device: Any,
    progress: bool | None,
) -> tuple[dict[str, Any], tuple[str, str]]:
    """Gradients of one model: ``{var: (dims, array, attrs)}`` and (device, dtype) used."""
    grads: list[np.ndarray] = []
    outs: list[np.ndarray] = []
    layer_grads: dict[str, list[np.ndarray]] = {}
    layer_dims: dict[str, tuple[str, ...]] = {}
    with probe_session(
        model, inputs, batchnorm=batchnorm, batch_size=batch_size, device=device, caller=_CALLER
    ) as s:
        captured: list[tuple[str, torch.Tensor]] = []
        wanted = set(names)
        modules = dict(s.model.named_modules())

        def capture(module: torch.nn.Module, _args: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return None
            # Return a copy so that a later in-place op (ReLU(inplace=True)) rewrites the copy,
            # not the tensor we differentiate with respect to.
            captured.append((s.mode.call_name(module_names[module]), out))
            return out.clone()

        module_names = {modules[n]: n for n in wanted}
        for n in names:
            s.handles.append(modules[n].register_forward_hook(capture))
        slices = chunks(inputs.n, s.batch_size)
        bar = progress_bar(len(slices), progress, "gradients")
        with torch.inference_mode(False), torch.enable_grad():
            for i, sl in enumerate(slices):
                captured.clear()
                x = to_device(inputs.data[sl], s.device, s.dtype).requires_grad_(True)
                out = forward(s.model, s.mode, x, i == 0, _CALLER)
                y = select_output(out, output, x.shape[0], _CALLER)
                targets = [x] + [t for _, t in captured]
                g = torch.autograd.grad(y.sum(), targets, allow_unused=True)
                grads.append(_host(g[0], x))
                outs.append(y.detach().cpu().numpy())
                for (name, t), gt in zip(captured, g[1:], strict=True):
                    layer_grads.setdefault(name, []).append(_host(gt, t))
                    layer_dims[name] = tuple(f"{name}:{d}" for d in input_dims(t.dim() - 1))
                bar.update()
        bar.close()
        device_used, dtype_used = str(s.device), str(s.dtype).replace("torch.", "")
    if names and not layer_grads:
        raise ValueError(
            f"none of the selected layers {names[:5]} produced a tensor output that depends on "
            "the input; nothing to differentiate with respect to."
        )
    result: dict[str, Any] = {
        GRADIENT: (
            ("sample", *inputs.dims),
            np.concatenate(grads),
            {
                "long_name": "input gradient",
                "units": "output units per input unit",
                LAYER: "input",
                DEPTH: 0,
            },
        ),
        OUTPUT: (("sample",), np.concatenate(outs), {"long_name": "selected output"}),
    }
    for depth, (name, parts) in enumerate(layer_grads.items(), start=1):
        result[f"{LAYER_GRADIENT_PREFIX}{name}"] = (
            ("sample", *layer_dims[name]),
            np.concatenate(parts),
            {"long_name": f"gradient w.r.t. the output of {name}", LAYER: name, DEPTH: depth},
        )
    return result, (device_used, dtype_used)


def _host(grad: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    if grad is None:
        return np.zeros(tuple(like.shape), dtype=_numpy_dtype(like))
    return grad.detach().cpu().numpy()


def _numpy_dtype(t: torch.Tensor) -> Any:
    return torch.empty((), dtype=t.dtype).numpy().dtype


class GradientProbe(BaseProbe):
    """Per-sample input gradients of any PyTorch model, as a scikit-learn estimator.

    A thin shell over :func:`input_gradients`: ``__init__`` stores the parameters, :meth:`fit`
    validates them and resolves the layers, :meth:`transform` probes.

    Parameters
    ----------
    model : torch.nn.Module or sequence of torch.nn.Module
        The network or an ensemble (a list of networks), see :func:`input_gradients`.
    output : None, int or callable
        Scalar output per sample, see :func:`input_gradients`.
    layers : None, "all" or list of str
        Modules whose output gradients are returned too.
    batchnorm : {"population", "coupled", "eval"}
        Batch statistics while probing, see :func:`input_gradients`.
    batch_size : int or "auto"
        Samples per pass.
    device : str or torch.device, optional
        Run on a copy of the model on this device.
    progress : bool, optional
        Show a progress bar.

    Attributes
    ----------
    models_ : list of torch.nn.Module
        The modules that run (``torch.compile`` and ``DataParallel`` wrappers removed).
    n_models_ : int
        Ensemble size, 0 for a single model.
    layers_ : list of str
        The resolved layer names.
    input_shape_ : tuple or None
        Shape of one input seen in :meth:`fit`.

    Notes
    -----
    ``clone`` shares the model rather than deep-copying its weights: a probe never writes it.

    Examples
    --------
    >>> import torch
    >>> from shatterkit import GradientProbe, inputs
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> ds = GradientProbe(net).fit_transform(inputs.line(n=32))
    >>> ds["gradient"].dims
    ('sample', 'feature')
    """

    _parameter_constraints: dict[str, Any] = {
        **BaseProbe._parameter_constraints,
        "output": [None, Interval(Integral, None, None, closed="neither"), callable],
        "layers": [None, str, list, tuple],
    }

    def __init__(
        self,
        model: Any,
        output: Any = None,
        layers: Any = None,
        batchnorm: str = "population",
        batch_size: int | str = 256,
        device: Any = None,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.output = output
        self.layers = layers
        self.batchnorm = batchnorm
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def _transform(self, model: Any, X: Any) -> xr.Dataset:
        return input_gradients(
            model,
            X,
            output=self.output,
            layers=self.layers_ or None,
            batchnorm=self.batchnorm,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
        )
