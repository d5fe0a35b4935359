"""Per-sample input gradients (and layer-output gradients) from one batched backward pass."""

from __future__ import annotations

import json
import warnings
from functools import partial
from numbers import Integral
from typing import Any

import torch
import xarray as xr
from sklearn.utils._param_validation import Interval

from shatterkit._dims import (
    DEPTH,
    GRADIENT,
    LAYER,
    LAYER_GRADIENT_PREFIX,
    OUTPUT,
    SAMPLE,
    input_dims,
)
from shatterkit.probes._base import BaseProbe, resolve_layers
from shatterkit.probes._driver import ChunkFn, Variables, run_probe
from shatterkit.probes._engine import (
    Session,
    check_common,
    describe_output,
    differentiate,
    forward,
    iterate_models,
    keeps_running_stats,
    mode_idle,
    prepare_inputs,
    select_output,
    to_device,
    to_host,
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
    store: Any = None,
    resume: bool = False,
    autocast: Any = None,
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
    store : str, os.PathLike or zarr store, optional
        Stream the result batch by batch into this zarr store and return it lazily opened, so
        memory stays bounded by one batch. Each finished batch is flagged in the store.
    resume : bool
        With ``store``: keep the batches an interrupted run finished and compute only the rest
        (same probe, parameters, inputs, ensemble and ``batch_size``; a finished model is
        skipped).
    autocast : {None, "bfloat16", "float16"}
        Run the forward under ``torch.autocast`` with this dtype (``float16`` on CUDA only);
        gradients are returned in the inputs' dtype. ``benchmarks/`` measures the error this
        introduces against float32.

    Returns
    -------
    xarray.Dataset
        ``gradient`` (dims ``sample`` + the input's dims), ``output`` (``sample``), and one
        ``gradient:<layer>`` variable per selected layer; see ``docs/schema.md``. Dask-backed
        inputs give a dask-backed result, one task per input block.

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
    check_common(batchnorm, batch_size, _CALLER)
    if not (output is None or callable(output) or _is_index(output)):
        raise TypeError(
            f"The 'output' parameter of {_CALLER} must be None, an int or a callable. "
            f"Got {output!r} instead."
        )
    names = resolve_layers(unwrap_model(members[0]), layers, _CALLER)
    return run_probe(
        members,
        inputs,
        partial(_chunk_fn, output=output, names=names, dims=inputs.dims),
        ensemble=ensemble,
        session_kw={
            "batchnorm": batchnorm,
            "batch_size": batch_size,
            "device": device,
            "caller": _CALLER,
            "autocast": autocast,
        },
        attrs={
            "model_class": type(unwrap_model(members[0])).__name__,
            "output": describe_output(output),
            "batchnorm": batchnorm,
            "autocast": str(autocast).replace("torch.", "") if autocast is not None else "none",
            "layers": json.dumps(names),
            "history": f"shatterkit.input_gradients(batchnorm={batchnorm!r}, layers={layers!r})",
        },
        progress=progress,
        store=store,
        resume=resume,
    )


def _chunk_fn(s: Session, *, output: Any, names: list[str], dims: tuple[str, ...]) -> ChunkFn:
    """Set up the layer hooks of one model; return the per-batch gradient function."""
    captured: list[tuple[str, torch.Tensor]] = []
    modules = dict(s.model.named_modules())
    module_names = {modules[n]: n for n in names}
    seen: set[str] = set()

    def capture(module: torch.nn.Module, _args: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return None
        captured.append((s.mode.call_name(module_names[module]), out))
        seen.add(module_names[module])
        # Return a copy so that a later in-place op (ReLU(inplace=True)) rewrites the copy,
        # not the tensor we differentiate with respect to.
        return out.clone()

    for n in names:
        s.handles.append(modules[n].register_forward_hook(capture))

    # the modules a checkpointed backward must not recompute (see differentiate)
    norms = [m for m in s.model.modules() if keeps_running_stats(m)]

    def run(x_cpu: torch.Tensor, first: bool) -> tuple[Variables, dict[str, Any]]:
        captured.clear()
        with torch.inference_mode(False), torch.enable_grad():
            # the model gets a non-leaf copy, which a first in-place op may rewrite; so the leaf
            # itself need not be a private copy of the inputs (never written)
            x = to_device(x_cpu, s.device, s.dtype, copy=False).requires_grad_(True)
            out = forward(s.model, s.mode, x.clone(), first, _CALLER, s.autocast)
            if not s.mode.passthrough:  # nothing for the mode to change: later batches skip it
                s.mode.passthrough = mode_idle(s.model, s.mode)
            y = select_output(out, output, x.shape[0], _CALLER)
            targets = [x] + [t for _, t in captured]
            grads = differentiate(y.sum(), targets, norms, s.mode)
        if names and first and not captured:
            raise ValueError(
                f"none of the selected layers {names[:5]} produced a tensor output that depends "
                "on the input; there is nothing to differentiate with respect to."
            )
        if first and len(seen) < len(names):
            warnings.warn(
                f"{_CALLER}: the selected layer(s) {[n for n in names if n not in seen]} gave no "
                "tensor output that depends on the input (never called, or detached); their "
                "gradients are left out.",
                RuntimeWarning,
                stacklevel=4,  # the caller of input_gradients
            )
        variables: Variables = {
            GRADIENT: (
                (SAMPLE, *dims),
                _host(grads[0], x),
                {
                    "long_name": "input gradient",
                    "units": "output units per input unit",
                    LAYER: "input",
                    DEPTH: 0,
                },
            ),
            # a copy: the selected output may be a view of a tensor the model keeps
            OUTPUT: (
                (SAMPLE,),
                to_host(y.detach().to(x.dtype, copy=True)),
                {"long_name": "selected output"},
            ),
        }
        for depth, ((name, t), g) in enumerate(zip(captured, grads[1:], strict=True), start=1):
            variables[f"{LAYER_GRADIENT_PREFIX}{name}"] = (
                (SAMPLE, *(f"{name}:{d}" for d in input_dims(t.dim() - 1))),
                _host(g, t),
                {"long_name": f"gradient w.r.t. the output of {name}", LAYER: name, DEPTH: depth},
            )
        return variables, {}

    return run


def _is_index(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _host(grad: torch.Tensor | None, like: torch.Tensor) -> Any:
    return to_host(torch.zeros_like(like) if grad is None else grad)


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
    autocast : {None, "bfloat16", "float16"}
        Run the forward under ``torch.autocast`` with this dtype.

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
        autocast: Any = None,
    ) -> None:
        self.model = model
        self.output = output
        self.layers = layers
        self.batchnorm = batchnorm
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.autocast = autocast

    def _transform(self, model: Any, X: Any, **kw: Any) -> xr.Dataset:
        return input_gradients(
            model,
            X,
            output=self.output,
            layers=self.layers,
            batchnorm=self.batchnorm,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
            autocast=self.autocast,
            **kw,
        )
