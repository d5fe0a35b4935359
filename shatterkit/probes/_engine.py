"""The hook and autograd machinery shared by both probes, written once.

Three pieces:

* :class:`ProbeMode`, a ``TorchFunctionMode`` that sees every functional call inside the model's
  forward. It replaces the batch statistics of ``F.batch_norm`` and :func:`shatterkit._functional.center`
  according to the probe's ``batchnorm`` choice, turns functional dropout into the identity, and
  records the sign of the pre-activation of every rectifier call (module or functional).
* :func:`preserved_state`, a context manager that restores train/eval flags, buffers and removes
  hooks, whatever happens inside (exceptions and ``KeyboardInterrupt`` included).
* :func:`prepare_inputs`, :func:`resolve_device` and :func:`population_statistics`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode

from shatterkit._dims import SAMPLE, input_dims
from shatterkit._functional import center

# -- what the mode intercepts -------------------------------------------------------------------

#: functional rectifiers: "on" means pre-activation > 0
RECTIFIER_FUNCS: frozenset[Any] = frozenset(
    {
        F.relu,
        F.relu_,
        torch.relu,
        torch.relu_,
        torch.Tensor.relu,
        torch.Tensor.relu_,
        F.relu6,
        F.leaky_relu,
        F.leaky_relu_,
        F.prelu,
        torch.prelu,
        F.rrelu,
        F.rrelu_,
    }
)
#: smooth activations: the sign of the pre-activation is recorded
SMOOTH_FUNCS: frozenset[Any] = frozenset(
    {F.gelu, F.silu, F.elu, F.selu, F.celu, F.softplus, F.mish, F.hardswish}
)
#: module types whose every call must show up as an intercepted activation op
RECTIFIER_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
)
DROPOUT_FUNCS: frozenset[Any] = frozenset(
    {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
)
_BATCH_NORM, _CENTER, _DROPOUT, _ACTIVATION, _HARDTANH = range(5)
#: what the mode does with each function it intercepts (absent: call it unchanged)
_KINDS: dict[Any, int] = {
    F.batch_norm: _BATCH_NORM,
    center: _CENTER,
    F.hardtanh: _HARDTANH,
    **dict.fromkeys(DROPOUT_FUNCS, _DROPOUT),
    **dict.fromkeys(RECTIFIER_FUNCS | SMOOTH_FUNCS, _ACTIVATION),
}
#: dtypes whose sign numpy takes on the CPU (see :func:`positive`)
_NUMPY_SIGN_DTYPES = frozenset({torch.float16, torch.float32, torch.float64})
_NUMPY_SIGN_MAX = 1 << 20
_BN_SIGNATURE = inspect.signature(F.batch_norm)
_CENTER_SIGNATURE = inspect.signature(center)

BATCHNORM_MODES = ("population", "coupled", "eval")
#: the population statistics are gathered without a graph, in batches this many times larger
GATHER_BATCH_FACTOR = 4
#: on the CPU larger batches stop paying off (measured in benchmarks/): cap "auto" there
CPU_AUTO_BATCH_MAX = 512


class _StopForward(Exception):
    """Raised inside a forward once the statistics being gathered have been seen."""


class StatisticsNeeded(Exception):
    """Raised by the first batch-norm call of a forward whose population statistics are not yet
    gathered (see :meth:`Session.gather_statistics`)."""


@dataclass
class _Stat:
    """Population statistics of one batch-coupling call.

    Each gathering batch contributes its mean and variance, two-pass in the input's dtype (at
    least float32): the mean, then the moments of the deviations from it (shifted data: no
    cancellation); batches are merged in float64 with Chan et al.'s pairwise update. On one CPU
    thread this took 1/7 to 1/2 of the time of ``torch.var_mean`` or of float64 sums of squares
    (inputs of 2048 x 200, 256 x 16 x 32 x 32 and 1024 x 64 x 16 x 16; torch 2.13), and it is more
    exact.
    """

    count: int = 0
    running_mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        shift = x.mean(dims, keepdim=True)
        dev = x - shift  # exact where x is near its (rounded) mean
        d1 = dev.mean(dims).to(torch.float64)
        d2 = dev.square_().mean(dims).to(torch.float64)  # in place: one temporary, not two
        n = x.numel() // x.shape[1]
        # the shifted-data formula corrects for the rounding of the mean
        mean, m2 = shift.flatten().to(torch.float64) + d1, (d2 - d1 * d1).clamp_min(0.0) * n
        if self.running_mean is None or self.m2 is None:
            self.running_mean, self.m2 = mean, m2
        else:
            delta, total = mean - self.running_mean, self.count + n
            self.running_mean = self.running_mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count += n

    def finalize(self, dtype: torch.dtype) -> None:
        assert self.running_mean is not None and self.m2 is not None
        self.mean, self.var = self.running_mean.to(dtype), (self.m2 / self.count).to(dtype)


class ProbeMode(TorchFunctionMode):
    """Function mode active during every probe forward.

    ``batchnorm`` is one of ``"population"``, ``"coupled"``, ``"eval"`` or ``"gather"`` (the
    internal mode that computes the population statistics, see :func:`population_statistics`).
    ``record=True`` records the activation pattern of every rectifier call in ``patterns``.
    """

    def __init__(
        self,
        batchnorm: str = "population",
        *,
        record: bool = False,
        stats: list[_Stat] | None = None,
        whole_set: bool = True,
    ) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        self.record = record
        self.stats: list[_Stat] = [] if stats is None else stats
        #: population statistics will be gathered when a forward first needs them
        self.stats_pending = False
        self.whole_set = whole_set
        self.stack: list[str] = []
        self.patterns: list[tuple[str, torch.Tensor]] = []
        self.n_activation_calls = 0
        #: names of rectifier modules, to tell module calls from functional ones
        self.activation_modules: frozenset[str] = frozenset()
        self.stack_hooks: list[Any] = []
        #: batch-norm, centring and dropout calls in the running forward whose result the mode
        #: changes (with ``batchnorm="eval"``, an eval-mode module's call is left as it was); a
        #: forward without any leaves nothing for the mode to do unless it records (see
        #: ``passthrough`` and :func:`mode_idle`)
        self.n_changed = 0
        #: run later forwards without the mode (set once the first forward made no call the mode
        #: changes and nothing could make one on other inputs, see :func:`mode_idle`; a recording
        #: probe then records by hooks, see :func:`record_by_hooks`): ~4 us less per torch call
        self.passthrough = False
        #: after the first forward (:meth:`fix_layout`): the number of rectifier calls a forward
        #: makes, and for each call the columns of ``out`` that receive its pattern (None: skip)
        self.n_calls: int | None = None
        self.slots: list[slice | None] = []
        #: the ``(samples, units)`` bool buffer the patterns of the running forward go into: a
        #: numpy array on the CPU (slicing it costs a tenth of slicing a tensor), else a tensor
        self.out: np.ndarray | torch.Tensor | None = None
        #: in the running forward: calls of rectifier modules, the input of the latest one, and
        #: whether every rectifier call so far was such a module's call on that very input (then
        #: pre-hooks on those modules can record later forwards, see :func:`record_by_hooks`)
        self.n_module_calls = 0
        self.module_input: Any = None
        self.module_calls_only = True
        self._n_recorded = 0
        self._bn_calls = 0
        self._name_calls: dict[str, int] = {}

    def start_forward(self) -> None:
        self.n_changed = 0
        self._bn_calls = 0
        self._name_calls = {}
        self.patterns = []
        self.stack = []
        self._n_recorded = 0
        self.n_module_calls = 0
        self.module_calls_only = True

    # -- naming ---------------------------------------------------------------------------------
    def call_name(self, base: str) -> str:
        """``base`` for the first call in this forward, ``base#k`` for the (k+1)-th."""
        k = self._name_calls.get(base, 0)
        self._name_calls[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def fix_layout(self, keep: list[int]) -> None:
        """After the first forward: later forwards write the patterns of the calls ``keep`` (indices
        into that forward's ``patterns``) side by side into ``out``, in that order, and skip the
        other calls.

        The calls are then known by position, so the module stack hooks (about 10 us per module
        call) come off; a forward that makes another number of rectifier calls raises.
        """
        self.n_calls = len(self.patterns)
        self.slots = [None] * self.n_calls
        start = 0
        for k in keep:
            size = int(self.patterns[k][1].shape[1])
            self.slots[k] = slice(start, start + size)
            start += size
        for h in self.stack_hooks:
            h.remove()
        self.stack_hooks = []

    def check_calls(self) -> None:
        """Raise if the forward that just ran made another number of rectifier calls."""
        if self.n_calls is not None and self._n_recorded != self.n_calls:
            raise RuntimeError(data_dependent_error(self.n_calls, self._n_recorded))

    def _owner(self) -> str:
        return self.stack[-1] if self.stack else ""

    # -- dispatch -------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        kind = _KINDS.get(func)  # one lookup: most calls (linear, add, ...) pass straight on
        if kind is None:
            return func(*args, **kwargs)
        if kind == _BATCH_NORM:
            return self._batch_norm(args, kwargs)
        if kind == _CENTER:
            return self._center(args, kwargs)
        if kind == _DROPOUT:  # every dropout function takes (input, p, training, ...)
            self.n_changed += bool(args[2] if len(args) > 2 else kwargs.get("training", True))
            return args[0] if args else kwargs["input"]
        if kind == _ACTIVATION or _is_relu6_hardtanh(args, kwargs):
            self.n_activation_calls += 1
            if self.record:
                self._record(func, args[0] if args else kwargs["input"])
        return func(*args, **kwargs)

    def _record(self, func: Any, pre: torch.Tensor) -> None:
        k = self._n_recorded
        self._n_recorded += 1
        if self.n_calls is None:
            owner = self._owner()
            by_module = owner in self.activation_modules
            self.module_calls_only &= by_module and pre is self.module_input
            base = owner if by_module else _functional_name(owner, func)
            self.patterns.append((self.call_name(base), positive(pre)))
            return
        if k >= self.n_calls:
            raise RuntimeError(data_dependent_error(self.n_calls, k + 1))
        slot = self.slots[k]
        if slot is not None and self.out is not None:
            positive(pre, out=self.out[:, slot])

    def _next_stat(self, x: torch.Tensor) -> _Stat | None:
        """Population statistics for this call, or None while they are being gathered."""
        if self.stats_pending:
            raise StatisticsNeeded
        k = self._bn_calls
        self._bn_calls += 1
        if k < len(self.stats) and self.stats[k].mean is not None:
            return self.stats[k]
        if self.batchnorm != "gather":
            raise RuntimeError(
                f"population statistics are missing for batch-norm call {k} in "
                f"{self._owner() or 'the model'}; the model made more batch-norm calls than "
                "while the statistics were gathered (is its forward data-dependent?)"
            )
        if k == len(self.stats):
            self.stats.append(_Stat())
        stat = self.stats[k]
        stat.add(x)
        if self.whole_set:
            stat.finalize(x.dtype)
            return stat
        raise _StopForward

    def _batch_norm(self, args: tuple, kwargs: dict) -> torch.Tensor:
        a = _bind(_BN_SIGNATURE, args, kwargs)
        x, weight, bias, eps = a["input"], a["weight"], a["bias"], a["eps"]
        self.n_changed += self.batchnorm != "eval" or bool(a["training"])
        if self.batchnorm == "eval":
            if a["running_mean"] is None:
                raise ValueError(
                    "batchnorm='eval' needs running statistics, but "
                    f"{self._owner() or 'a batch-norm call'!r} has none "
                    "(track_running_stats=False). Use batchnorm='population' or 'coupled'."
                )
            return F.batch_norm(
                x, a["running_mean"], a["running_var"], weight, bias, False, 0.0, eps
            )
        if self.batchnorm == "coupled":
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
        stat = self._next_stat(x)
        assert stat is not None and stat.mean is not None
        return F.batch_norm(x, stat.mean, stat.var, weight, bias, False, 0.0, eps)

    def _center(self, args: tuple, kwargs: dict) -> torch.Tensor:
        a = _bind(_CENTER_SIGNATURE, args, kwargs)
        x = a["input"]
        self.n_changed += self.batchnorm != "eval" or bool(a["training"])
        if self.batchnorm == "eval":
            if a["running_mean"] is None:
                raise ValueError(
                    f"batchnorm='eval' needs running statistics, but {self._owner()!r} has none."
                )
            return center(x, a["running_mean"], training=False)
        if self.batchnorm == "coupled":
            return center(x, None, training=True)
        stat = self._next_stat(x)
        assert stat is not None and stat.mean is not None
        return center(x, stat.mean, training=False)


def differentiate(
    y: torch.Tensor, targets: list[torch.Tensor], norms: list[nn.Module], mode: ProbeMode
) -> tuple:
    """``torch.autograd.grad(y, targets)``, refusing a backward that recomputes a call of one of
    the batch-norm or centring modules ``norms`` (activation checkpointing:
    ``torch.utils.checkpoint``, torchvision's ``DenseNet(memory_efficient=True)``). The recomputation runs outside the function mode, so
    with ``batchnorm="population"`` or ``"coupled"`` it would normalise with the module's running
    statistics, and the gradients would not be those of the probed forward. (With ``"eval"`` the
    recomputed call is the one the mode made.)"""
    if mode.passthrough or mode.batchnorm == "eval":
        return torch.autograd.grad(y, targets, allow_unused=True)

    def refuse(module: nn.Module, _args: Any) -> None:
        raise RuntimeError(
            f"the model recomputes its {type(module).__name__} call during the backward pass "
            "(activation checkpointing, e.g. torch.utils.checkpoint or torchvision's "
            f"memory_efficient DenseNet), where batchnorm={mode.batchnorm!r} cannot give it the "
            "statistics of the probed forward. Turn checkpointing off for probing, or use "
            "batchnorm='eval'."
        )

    handles = [m.register_forward_pre_hook(refuse) for m in norms]
    try:
        return torch.autograd.grad(y, targets, allow_unused=True)
    finally:
        for h in handles:
            h.remove()


def _bind(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by name; calls that name every parameter once (as ``F.batch_norm`` forwards the
    BatchNorm modules' calls) skip ``Signature.bind``."""
    names = list(signature.parameters)
    if len(args) + len(kwargs) == len(names):
        fast = dict(zip(names, args, strict=False))  # args fill the first names
        fast.update(kwargs)
        if list(fast) == names:
            return fast
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _is_relu6_hardtanh(args: tuple, kwargs: dict) -> bool:
    """``nn.ReLU6`` calls ``F.hardtanh(x, 0, 6)``: a rectifier; other hardtanh calls are not."""
    min_val = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    return float(min_val) == 0.0


#: modules whose forward takes fused kernels (other numerics, nested tensors) only while no
#: torch function mode is active: with them the mode stays on, so every batch runs the same code
_FAST_PATH_MODULES: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)
#: packages whose modules' ``forward`` (and forward hooks) make the same calls for every input
_KNOWN_CODE = ("torch.", "torchvision.", "shatterkit.")


def _known(function: Any) -> bool:
    """Whether ``function`` (a module's forward or a forward hook) is torch's, torchvision's or
    shatterkit's code rather than the user's."""
    return (getattr(function, "__module__", None) or "").startswith(_KNOWN_CODE)


def mode_idle(model: nn.Module, mode: ProbeMode) -> bool:
    """After a first forward: whether later forwards can run without the function mode.

    True when the first forward made no call whose result the mode changes and nothing can make
    one on other inputs: every module's ``forward`` and forward hook (global ones included) is
    torch's, torchvision's or shatterkit's (the user's code could call ``F.relu``, ``F.dropout``
    or ``F.batch_norm`` for some inputs only); no module takes a fused fast path that only runs
    without a function mode (``nn.MultiheadAttention``, the ``nn.Transformer*`` layers); and
    either ``batchnorm="eval"``, where the mode would make of an eval-mode batch-norm, centring
    or dropout module's call what the module makes of it, or the model has no such module.
    """
    if mode.n_changed:
        return False
    global_hooks = (
        torch.nn.modules.module._global_forward_pre_hooks,
        torch.nn.modules.module._global_forward_hooks,
    )
    if not all(_known(h) for hooks in global_hooks for h in hooks.values()):
        return False
    for m in model.modules():
        if isinstance(m, _FAST_PATH_MODULES):
            return False
        if not (
            _known(m.__dict__.get("forward", type(m).forward))  # an instance may replace it
            and all(_known(h) for h in m._forward_pre_hooks.values())
            and all(_known(h) for h in m._forward_hooks.values())
        ):
            return False
        if mode.batchnorm != "eval" and (
            isinstance(m, nn.modules.dropout._DropoutNd) or keeps_running_stats(m)
        ):
            return False
    return True


def keeps_running_stats(module: nn.Module) -> bool:
    """A batch-norm or centring module: one with a ``running_mean`` buffer (``None`` included, as
    with ``track_running_stats=False``)."""
    return "running_mean" in module._buffers


def positive(pre: torch.Tensor, out: Any = None) -> Any:
    """``pre > 0`` as a bool tensor of shape ``(samples, units)``, or written into ``out`` (a bool
    tensor or numpy array of that shape), which is returned.

    On the CPU numpy takes the sign: on one thread its comparison took 1/12 (51,200 floats) to
    1/4 (4-13 million floats) of the time of torch's with a scalar (torch 2.13). torch's runs on
    several threads, so above ``_NUMPY_SIGN_MAX`` elements with more than 4 threads torch does it.
    """
    t = pre.detach()
    if t.dim() < 2:
        raise ValueError(
            "activation patterns need rectifier inputs with a sample axis and at least one unit "
            f"axis; a rectifier was called on a tensor of shape {tuple(t.shape)}."
        )
    numpy = (
        t.device.type == "cpu"
        and t.dtype in _NUMPY_SIGN_DTYPES
        and (t.numel() <= _NUMPY_SIGN_MAX or torch.get_num_threads() <= 4)
    )
    flat: Any = t.numpy().reshape(t.shape[0], -1) if numpy else t.flatten(1)
    if out is None:
        return torch.from_numpy(flat > 0) if numpy else flat > 0
    if tuple(flat.shape) != tuple(out.shape):
        raise RuntimeError(
            f"a rectifier call gave {tuple(flat.shape)} (samples, units) where the first batch "
            f"gave {out.shape[1]} units for {out.shape[0]} samples; activation patterns need the "
            "same calls for every input (is the model's forward data-dependent?)"
        )
    as_numpy = isinstance(out, np.ndarray)
    if numpy:
        np.greater(flat, 0, out=out if as_numpy else out.numpy())
    else:
        torch.gt(flat, 0, out=torch.from_numpy(out) if as_numpy else out)
    return out


def data_dependent_error(expected: int, got: int) -> str:
    return (
        f"the model made {got} rectifier calls on this batch but {expected} on the first one; "
        "activation patterns need the same calls for every input (is its forward "
        "data-dependent?). Probe such inputs separately."
    )


def _functional_name(owner: str, func: Any) -> str:
    fname = getattr(func, "__name__", str(func)).rstrip("_")
    return f"{owner}.{fname}()" if owner else f"{fname}()"


# -- model state ----------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that really runs: ``torch.compile``'s ``_orig_mod``, ``DataParallel``'s ``module``.

    Module hooks are ignored inside compiled graphs, so a compiled model is probed through the
    original module it wraps (same parameters, same function).
    """
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(
            model, (nn.DataParallel, nn.parallel.DistributedDataParallel)
        ) and isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            break
    return model


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[list[Any]]:
    """Put ``model`` in eval mode; on exit restore every flag and buffer and remove the hooks.

    Yields a list to which the caller appends hook handles. Parameters are never written by the
    probes; a forward that modifies them in place anyway raises a warning.
    """
    modules = list(model.modules())  # one walk of the module tree (each costs ~5 us a module)
    training = {m: m.training for m in modules}
    params = {p: None for m in modules for p in m._parameters.values() if p is not None}
    requires_grad = {p: p.requires_grad for p in params}
    buffers = {b: b.detach().clone() for m in modules for b in m._buffers.values() if b is not None}
    versions = {p: _version(p) for p in params}
    handles: list[Any] = []
    try:
        if any(training.values()):
            model.eval()
        yield handles
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            if m.training != flag:
                m.training = flag
        for p, flag in requires_grad.items():
            if p.requires_grad != flag:  # inference tensors refuse even a no-op set
                p.requires_grad_(flag)
        with torch.no_grad():
            for b, saved in buffers.items():
                if _version(b) != 0 and not torch.equal(b, saved):
                    b.copy_(saved)
        changed = [p for p, v in versions.items() if _version(p) != v]
        if changed:
            warnings.warn(
                f"the model's forward modified {len(changed)} parameter(s) in place while it was "
                "probed; shatterkit does not write parameters and cannot undo this",
                RuntimeWarning,
                stacklevel=3,
            )


def _version(t: torch.Tensor) -> int | None:
    """The in-place version counter; ``None`` for inference tensors, which have none."""
    return None if t.is_inference() else t._version


def install_stack_hooks(model: nn.Module, mode: ProbeMode, handles: list[Any]) -> list[str]:
    """Forward pre/post hooks that keep ``mode.stack`` (the names of the modules now running).

    Returns a list that collects the name of every rectifier module call during which no
    activation op was intercepted, so the caller can raise instead of returning partial patterns.
    """
    missed: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    activations = {m for m in names if isinstance(m, RECTIFIER_MODULES) or _is_crelu(m)}
    started: dict[nn.Module, list[int]] = {m: [] for m in activations}

    def pre(module: nn.Module, args: Any) -> None:
        mode.stack.append(names[module])
        if module in started:
            started[module].append(mode.n_activation_calls)
            mode.n_module_calls += 1
            mode.module_input = args[0] if args else None

    def post(module: nn.Module, _args: Any, _out: Any) -> None:
        if mode.stack:
            mode.stack.pop()
        if module in started and started[module]:
            if started[module].pop() == mode.n_activation_calls:
                missed.append(names[module])

    for module in names:
        mode.stack_hooks.append(module.register_forward_pre_hook(pre))
        mode.stack_hooks.append(module.register_forward_hook(post, always_call=True))
    handles.extend(mode.stack_hooks)
    mode.activation_modules = frozenset(names[m] for m in activations)
    return missed


def record_by_hooks(model: nn.Module, mode: ProbeMode, handles: list[Any]) -> None:
    """After the first recorded forward, record later ones with a forward pre-hook per rectifier
    module instead of the function mode, where that sees the same calls: every rectifier call of
    the first forward was one rectifier module's call on its own input, and the mode has nothing
    to change (:func:`mode_idle`). The mode's dispatch costs ~5 us per torch call; on the paper's
    50-block MLP that was a tenth of a bare forward. Where the hooks take over,
    ``mode.passthrough`` is set.
    """
    if not (
        mode.module_calls_only
        and mode.n_module_calls == mode._n_recorded
        and mode_idle(model, mode)
    ):
        return

    def pre(_module: nn.Module, args: Any) -> None:
        mode._record(None, args[0])

    for m in model.modules():
        if isinstance(m, RECTIFIER_MODULES) or _is_crelu(m):
            handles.append(m.register_forward_pre_hook(pre))
    mode.passthrough = True


def _is_crelu(module: nn.Module) -> bool:
    return type(module).__name__ == "CReLU"


# -- inputs ---------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Inputs plus what is needed to label the results.

    ``data`` is a CPU tensor, or a dask array for inputs that stay lazy (probed block by block).
    """

    data: Any
    dims: tuple[str, ...]
    coords: dict[str, Any]
    caller: str = "probe"

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def lazy(self) -> bool:
        return not isinstance(self.data, torch.Tensor)

    @property
    def dtype(self) -> torch.dtype:
        if self.lazy:
            return torch.from_numpy(np.zeros(0, dtype=self.data.dtype)).dtype
        return self.data.dtype

    def get(self, sl: slice) -> torch.Tensor:
        """The samples ``sl`` as a CPU tensor (a lazy block is computed and checked here)."""
        if not self.lazy:
            return self.data[sl]
        block = shared_tensor(np.asarray(self.data[sl]))
        _check_finite(block, self.caller, offset=sl.start or 0)
        return block


def prepare_inputs(X: Any, caller: str) -> Inputs:
    """Validate ``X`` and return it as a CPU tensor (or lazy dask array) with dims and coords.

    Accepts an ``xarray.DataArray`` whose first dim is ``sample`` (dask-backed ones stay lazy), a
    ``torch.Tensor`` or an array-like with the samples along the first axis. Never modifies ``X``.
    """
    coords: dict[str, Any] = {}
    data: Any
    if isinstance(X, xr.Dataset):
        raise TypeError(
            f"The 'X' parameter of {caller} must be a DataArray, tensor or array of inputs. "
            "Got an xarray.Dataset instead; pass one of its variables."
        )
    if isinstance(X, xr.DataArray):
        if X.ndim == 0 or X.dims[0] != SAMPLE:
            raise ValueError(
                f"The 'X' parameter of {caller} must have 'sample' as its first dim. "
                f"Got dims {X.dims} instead."
            )
        dims = tuple(str(d) for d in X.dims[1:])
        coords = {
            str(k): v.variable.load() for k, v in X.coords.items() if set(v.dims) <= set(X.dims)
        }
        if X.chunks is not None:
            data = X.data
        else:
            data = shared_tensor(X.values) if X.dtype != object else None
    elif isinstance(X, torch.Tensor):
        if X.device.type == "meta":
            raise ValueError(
                f"The 'X' parameter of {caller} must hold data. Got a tensor on the meta device."
            )
        data = X.detach()
        if data.is_inference():
            with torch.inference_mode(False):
                data = data.clone()
        data = data.cpu() if data.device.type != "cpu" else data
        dims = input_dims(max(data.dim() - 1, 0))
    else:
        try:
            arr = np.asarray(X)
        except Exception:  # noqa: BLE001 - anything not array-like
            arr = np.asarray([], dtype=object)
        if arr.dtype == object:
            raise TypeError(
                f"The 'X' parameter of {caller} must be a DataArray, tensor or array of numbers. "
                f"Got {type(X).__name__} instead."
            )
        data = shared_tensor(arr)
        dims = input_dims(max(arr.ndim - 1, 0))
    if data is None:
        raise TypeError(f"The 'X' parameter of {caller} must hold numbers. Got objects instead.")
    inputs = Inputs(data, dims, coords, caller)
    shape = tuple(data.shape)
    if len(shape) < 2:
        raise ValueError(
            f"The 'X' parameter of {caller} must have a sample axis and at least one input axis "
            f"(shape (n_samples, ...)). Got shape {shape} instead; for 1-D inputs "
            "use shape (n, 1), e.g. shatterkit.inputs.line()."
        )
    if shape[0] == 0:
        raise ValueError(f"The 'X' parameter of {caller} must hold at least one sample. Got 0.")
    dtype = inputs.dtype
    if dtype.is_complex or not dtype.is_floating_point:
        raise TypeError(
            f"The 'X' parameter of {caller} must have a real floating dtype (float32 or float64). "
            f"Got {dtype} instead; convert with .float() or .astype('float32')."
        )
    if not inputs.lazy:
        _check_finite(data, caller)
    return inputs


def shared_tensor(arr: np.ndarray) -> torch.Tensor:
    """``arr`` as a CPU tensor, sharing its memory where torch can (never written: every batch is
    copied by :func:`to_device` before the model sees it); copied if read-only, misaligned,
    byte-swapped, or with strides torch cannot take (negative, or not a multiple of the item
    size, as in a field of a structured array)."""
    if (
        arr.flags.writeable
        and arr.flags.aligned
        and arr.dtype.isnative
        and all(st >= 0 and st % arr.itemsize == 0 for st in arr.strides)
    ):
        return torch.from_numpy(arr)
    return torch.from_numpy(np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True))


def _check_finite(tensor: torch.Tensor, caller: str, offset: int = 0) -> None:
    # NaN and inf propagate through the sum: no mask of the inputs unless one is there (or the
    # sum overflows)
    if not torch.isfinite(tensor.sum()) and not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor.reshape(tensor.shape[0], -1))).any(1).nonzero().flatten()
        raise ValueError(
            f"The 'X' parameter of {caller} must be finite. Got NaN or inf in "
            f"{len(bad)} sample(s), first at index {(bad[:5] + offset).tolist()}."
        )


# -- device and dtype -----------------------------------------------------------------------------


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    first = None
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.dtype.is_floating_point:
            return t.device, t.dtype
        first = t if first is None else first
    return (torch.device("cpu") if first is None else first.device), None


def check_model_tensors(model: nn.Module, caller: str, gradients: bool) -> None:
    """Refuse parameters the probe cannot run: meta, uninitialised (lazy) or inference tensors."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    meta = [n for n, t in tensors if t.device.type == "meta"]
    if meta:
        raise ValueError(
            f"The 'model' parameter of {caller} must hold real parameters. Got a model on the "
            f"meta device ({_some(meta)}); load its weights (e.g. model.to_empty(device='cpu') "
            "and load_state_dict) first."
        )
    lazy = [n for n, t in tensors if is_lazy(t)]
    if lazy:
        raise ValueError(
            f"The 'model' parameter of {caller} must have initialised parameters. Got "
            f"uninitialised lazy parameters ({_some(lazy)}); run one forward on a batch of "
            "inputs first, so the probe does not create them."
        )
    inference = [n for n, t in tensors if t.is_inference()]
    if gradients and inference:
        raise ValueError(
            f"The 'model' parameter of {caller} must have parameters usable by autograd. Got "
            f"inference tensors ({_some(inference)}), made under torch.inference_mode(); "
            "build or load the model outside inference mode."
        )


def _some(names: list[str]) -> str:
    return ", ".join(map(repr, names[:3])) + (
        f" and {len(names) - 3} more" if len(names) > 3 else ""
    )


def resolve_device(model: nn.Module, device: Any, caller: str) -> tuple[nn.Module, torch.device]:
    """The module to run and its device: ``model`` itself, or a copy moved to ``device``."""
    current, _ = model_device_dtype(model)
    target = check_device(device, caller)
    if target is None:
        return model, current
    if target.type == current.type and (target.index is None or target.index == current.index):
        return model, current
    return copy.deepcopy(model).to(target), target


def check_device(device: Any, caller: str) -> torch.device | None:
    """``device`` as a ``torch.device`` if it exists on this machine (``None`` stays ``None``)."""
    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"The 'device' parameter of {caller} must be a torch device such as 'cpu' or "
            f"'cuda:0'. Got {device!r} instead."
        ) from None
    backends = {"cuda": torch.cuda, "mps": torch.backends.mps, "xpu": getattr(torch, "xpu", None)}
    if target.type in backends:
        backend: Any = backends[target.type]
        if backend is None or not backend.is_available():
            raise ValueError(
                f"The 'device' parameter of {caller} must be an available device. Got {device!r} "
                f"but {target.type.upper()} is not available on this machine."
            )
        count = backend.device_count() if hasattr(backend, "device_count") else None
        if target.index is not None and count is not None and target.index >= count:
            raise ValueError(
                f"The 'device' parameter of {caller} must be an available device. Got {device!r} "
                f"but only {count} {target.type.upper()} device(s) exist."
            )
    elif target.type != "cpu":
        raise ValueError(
            f"The 'device' parameter of {caller} must be 'cpu' or an available accelerator "
            f"('cuda', 'mps', 'xpu'). Got {device!r} instead."
        )
    return target


def compute_dtype(
    model: nn.Module, inputs: Inputs, device: torch.device, caller: str
) -> torch.dtype:
    _, dtype = model_device_dtype(model)
    dtype = dtype or inputs.dtype
    if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
        raise TypeError(
            f"The 'model' parameter of {caller} must be float32 or float64 on the CPU (the probe "
            f"computes in the model's dtype). Got a {str(dtype).replace('torch.', '')} model "
            "instead; convert it with model.float(), or probe on a CUDA device."
        )
    if inputs.dtype == torch.float16 and device.type == "cpu":
        raise TypeError(
            f"The 'X' parameter of {caller} must be float32 or float64 on the CPU. "
            "Got float16 instead; convert with .float()."
        )
    return dtype


# -- batching -------------------------------------------------------------------------------------


def chunks(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def to_device(
    x: torch.Tensor, device: torch.device, dtype: torch.dtype, *, copy: bool = True
) -> torch.Tensor:
    """A private copy of ``x`` on ``device``: a model whose first op is in place (e.g.
    ``ReLU(inplace=True)``) must rewrite neither the caller's inputs nor the ones kept for the
    next pass. ``copy=False`` is for callers that hand the model a copy of their own."""
    if device.type == "cuda":
        return x.pin_memory().to(device, dtype, non_blocking=True)
    return x.to(device, dtype, copy=copy)


def progress_bar(total: int, progress: bool | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    if progress is None:
        progress = total > 1 and sys.stderr.isatty()
    return tqdm(total=total, disable=not progress, desc=desc, leave=False)


def to_host(t: torch.Tensor) -> Any:
    """Start moving ``t`` to the host without waiting: a numpy array on the CPU, a pinned tensor
    filled asynchronously on CUDA (read it after :func:`finish_host`)."""
    t = t.detach()
    if t.device.type != "cuda":
        return t.numpy()
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out


def finish_host(arrays: list[Any], device: torch.device) -> list[np.ndarray]:
    """Wait once for the copies started by :func:`to_host`; return numpy arrays."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return [a.numpy() if isinstance(a, torch.Tensor) else a for a in arrays]


def forward(
    model: nn.Module,
    mode: ProbeMode,
    x: torch.Tensor,
    first: bool,
    caller: str,
    autocast: torch.dtype | None = None,
) -> Any:
    """One forward of ``model`` under ``mode``; shape errors on the first chunk become ValueError."""
    mode.start_forward()
    try:
        with (
            _eager(),
            contextlib.nullcontext() if mode.passthrough else mode,
            torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None),
        ):
            return model(x)
    except RuntimeError as err:
        if first and _looks_like_shape_error(err):
            raise ValueError(
                f"The 'X' parameter of {caller} must match the model's input. The model failed on "
                f"inputs of shape {tuple(x.shape)} (sample axis first): {err}"
            ) from err
        raise


def _eager() -> Any:
    """Run ``torch.compile``d submodules as plain Python: hooks and function modes are not seen
    inside compiled graphs (pytorch #117758), and dynamo fails on the probe's hooks."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def _looks_like_shape_error(err: RuntimeError) -> bool:
    text = str(err)
    keys = ("shape", "size", "dimension", "expected input", "Expected", "channels")
    return any(k in text for k in keys)


def population_statistics(
    model: nn.Module,
    inputs: Inputs,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    caller: str,
) -> list[_Stat]:
    """Per batch-norm call, the mean and (biased) variance of its input over the whole set.

    Each call's statistics depend on those of the calls before it, so they are gathered in call
    order: one pass over the chunks per call, each pass stopping right after the call it gathers.
    No graph is kept while gathering, so the gathering batch is larger than ``batch_size``: at
    least ``GATHER_BATCH_FACTOR`` times, and as many samples as fit a quarter of the free memory
    at three times the largest module output per sample (input, output and a skip path live at
    once). When the whole set fits in one gathering batch a single forward gathers all of them.
    """
    n = inputs.n
    # one sample tells how many batch-norm calls the model makes (none: nothing to gather) and
    # how large its activations are
    probe = ProbeMode(batchnorm="gather", whole_set=True)
    x1 = to_device(inputs.get(slice(0, 1)), device, dtype)
    with torch.no_grad():
        forward(model, probe, x1, True, caller)
    n_calls = len(probe.stats)
    if not n_calls:
        return []
    _, largest = output_bytes(model, probe, x1, caller)  # its statistics are gathered: reused
    gather = gather_batch_size(batch_size, 3 * max(largest, 1), device)
    mode = ProbeMode(batchnorm="gather", whole_set=n <= gather)
    with torch.no_grad():
        for target in range(n_calls):
            for i, sl in enumerate(chunks(n, gather)):
                try:
                    forward(model, mode, to_device(inputs.get(sl), device, dtype), i == 0, caller)
                except _StopForward:
                    pass
            if mode.whole_set:
                break
            mode.stats[target].finalize(dtype)
    return mode.stats


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (available RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil
    except ImportError:  # psutil comes with the dask extra; sysconf works on Linux and macOS
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return int(psutil.virtual_memory().available)


def gather_batch_size(batch_size: int, bytes_per_sample: int, device: torch.device) -> int:
    """Samples per forward while gathering population statistics (see there)."""
    fits = free_memory(device) // 4 // bytes_per_sample
    return int(max(batch_size * GATHER_BATCH_FACTOR, min(fits, 1 << 20)))


def iterate_models(model: Any, caller: str) -> tuple[list[nn.Module], bool]:
    """Split ``model`` into its ensemble members; ``True`` when it was given as an ensemble."""
    if isinstance(model, nn.ModuleList) or (
        isinstance(model, Sequence) and not isinstance(model, (str, nn.Module))
    ):
        members = list(model)
        if not members:
            raise ValueError(f"The 'model' parameter of {caller} must not be an empty ensemble.")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(
                    f"The 'model' parameter of {caller} must be a torch.nn.Module or a sequence "
                    f"of them. Got {type(m).__name__} at position {i} instead."
                )
        return members, True
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter of {caller} must be a torch.nn.Module or a sequence of them. "
            f"Got {type(model).__name__} instead."
        )
    return [model], False


def select_output(out: Any, output: Any, n: int, caller: str) -> torch.Tensor:
    """The scalar per sample that the probe differentiates, shape ``(n,)``."""
    if callable(output):
        y = output(out)
        if not isinstance(y, torch.Tensor) or y.shape not in ((n,), (n, 1)):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"The 'output' callable of {caller} must return one scalar per sample, a tensor "
                f"of shape ({n},). Got {shape} instead."
            )
        return y.reshape(n)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"The model's output must be a tensor for output={output!r} in {caller}. Got "
            f"{type(out).__name__}; pass output=<callable> that maps it to one scalar per sample."
        )
    flat = out.reshape(n, -1)
    if output is None:
        if flat.shape[1] != 1:
            raise ValueError(
                f"The 'output' parameter of {caller} must select one scalar per sample: the "
                f"model's output has shape {tuple(out.shape)} ({flat.shape[1]} values per sample). "
                "Pass output=<int> for one unit or output=<callable> for any scalar."
            )
        return flat[:, 0]
    if not -flat.shape[1] <= output < flat.shape[1]:
        raise ValueError(
            f"The 'output' parameter of {caller} must be an index in [-{flat.shape[1]}, "
            f"{flat.shape[1]}) for a model with {flat.shape[1]} outputs per sample. "
            f"Got {output!r} instead."
        )
    return flat[:, output]


def describe_output(output: Any) -> str:
    if output is None:
        return "model output"
    if callable(output):
        return f"callable {getattr(output, '__qualname__', type(output).__name__)}"
    return f"unit {int(output)}"


def versions() -> dict[str, str]:
    from shatterkit import __version__

    # str(): TorchVersion is a str subclass that h5netcdf cannot write
    return {"torch_version": str(torch.__version__), "shatterkit_version": __version__}


AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_autocast(autocast: Any, device: torch.device, caller: str) -> torch.dtype | None:
    """``None`` or the autocast dtype (``torch.bfloat16``/``"bfloat16"``, ``float16`` on CUDA)."""
    if autocast is None:
        return None
    dtype: Any = AUTOCAST_DTYPES.get(autocast, autocast) if isinstance(autocast, str) else autocast
    if dtype not in AUTOCAST_DTYPES.values():
        raise ValueError(
            f"The 'autocast' parameter of {caller} must be None, 'bfloat16' or 'float16'. "
            f"Got {autocast!r} instead."
        )
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError(
            f"The 'autocast' parameter of {caller} must be 'bfloat16' on the CPU. Got float16."
        )
    return dtype


def check_common(batchnorm: Any, batch_size: Any, caller: str) -> None:
    """Validate the parameters shared by both probes' functional cores."""
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(
            f"The 'batchnorm' parameter of {caller} must be a str among {set(BATCHNORM_MODES)}. "
            f"Got {batchnorm!r} instead."
        )
    if not (
        batch_size == "auto"
        or (
            isinstance(batch_size, (int, np.integer))
            and not isinstance(batch_size, bool)
            and batch_size >= 1
        )
    ):
        raise ValueError(
            f"The 'batch_size' parameter of {caller} must be an int in the range [1, inf) or "
            f"'auto'. Got {batch_size!r} instead."
        )


def count_nonfinite(ds: xr.Dataset, caller: str) -> int:
    """Count non-finite gradient values in ``ds``; warn with the first samples that have them."""
    count, where = 0, []
    # the Variables, not ds.data_vars: a DataArray built per variable took ~50 us each (103 of
    # them with layers="all": 4/5 of this function's time)
    for name, da in ds.variables.items():
        if not str(name).startswith("gradient") or name in ds.coords:
            continue
        values = da.values
        if np.isfinite(values.sum()):  # NaN and inf propagate: all finite, no mask needed
            continue
        bad = ~np.isfinite(values)
        count += int(bad.sum())
        if bad.any():
            other = [d for d in da.dims if d != SAMPLE]
            samples = np.flatnonzero(bad.any(axis=tuple(da.dims.index(d) for d in other)))
            where.append(f"{name} at samples {samples[:5].tolist()}")
    if count:
        warnings.warn(
            f"{caller}: {count} non-finite gradient value(s): {'; '.join(where)}. Recorded in "
            "attrs['n_nonfinite']; the metrics refuse them unless skipna=True.",
            RuntimeWarning,
            stacklevel=4,  # the caller of input_gradients
        )
    return count


def output_bytes(
    model: nn.Module, mode: ProbeMode, x: torch.Tensor, caller: str
) -> tuple[int, int]:
    """Forward ``x`` under ``mode`` without a graph; the total and the largest module output bytes."""
    sizes: list[int] = []

    def measure(_m: nn.Module, _a: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    hooks = [m.register_forward_hook(measure) for m in model.modules()]
    try:
        with torch.no_grad():
            forward(model, mode, x, True, caller)
    finally:
        for h in hooks:
            h.remove()
    return sum(sizes), max(sizes, default=0)


def auto_batch_size(
    model: nn.Module,
    x1: torch.Tensor,
    device: torch.device,
    mode: ProbeMode,
    gradients: bool,
    caller: str,
) -> int:
    """A batch size that fits a quarter of the free memory of ``device``.

    The per-sample cost is the total size of every module output per sample of ``x1`` (what
    autograd keeps for the backward pass), times 3 with gradients (activations, their
    gradients, slack). ``x1`` holds two samples where the set has them: batch norm in training
    mode (``batchnorm="coupled"``) needs more than one.
    """
    total, _ = output_bytes(model, mode, x1, caller)
    n = max(int(x1.shape[0]), 1)
    per_sample = -(-max(total, x1.numel() * x1.element_size()) // n) * (3 if gradients else 1)
    free = free_memory(device)
    cap = 65536 if device.type == "cuda" else CPU_AUTO_BATCH_MAX
    return int(max(1, min(cap, free // 4 // per_sample)))


@dataclass
class Session:
    """One model, ready to probe: on its device, in eval mode, hooks installed."""

    model: nn.Module
    mode: ProbeMode
    handles: list[Any]
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    missed: list[str]
    autocast: torch.dtype | None = None
    #: per variable, the rows of the whole-set result the running batch may be written into
    #: (set by the in-memory CPU driver; empty otherwise)
    out: dict[str, np.ndarray] = field(default_factory=dict)
    #: computes the population statistics while they are pending (``mode.stats_pending``)
    gather: Callable[[], list[_Stat]] | None = None

    def gather_statistics(self) -> None:
        """Gather the pending population statistics (a forward raised :class:`StatisticsNeeded`);
        that forward is then run again."""
        assert self.gather is not None
        self.mode.stats, self.gather = self.gather(), None
        self.mode.stats_pending = False
        self.missed.clear()  # the gathering forwards ran under another mode


@contextlib.contextmanager
def probe_session(
    model: nn.Module,
    inputs: Inputs,
    *,
    batchnorm: str,
    batch_size: int | str,
    device: Any,
    caller: str,
    record: bool = False,
    gradients: bool = True,
    stats: list[_Stat] | None = None,
    autocast: Any = None,
) -> Iterator[Session]:
    """Prepare ``model`` for probing and restore it afterwards, whatever happens.

    ``stats`` are population statistics computed beforehand (for lazy inputs probed by block).
    """
    model = unwrap_model(model)
    run, dev = resolve_device(model, device, caller)
    dtype = compute_dtype(run, inputs, dev, caller)
    with preserved_state(run) as handles:
        mode = ProbeMode(batchnorm, record=record)
        if batch_size == "auto":  # population: the probe batch's own statistics (any size)
            probe = (
                ProbeMode("gather", whole_set=True)
                if batchnorm == "population"
                else ProbeMode(batchnorm)
            )
            x1 = to_device(inputs.get(slice(0, 2)), dev, dtype)
            batch_size = auto_batch_size(run, x1, dev, probe, gradients, caller)
        if batchnorm == "coupled":
            batch_size = inputs.n
        gather = None
        if batchnorm == "population" and stats is not None:
            mode.stats = stats
        elif batchnorm == "population":  # gathered once a forward meets a batch-norm call
            gather = partial(
                population_statistics, run, inputs, int(batch_size), dev, dtype, caller
            )
            mode.stats_pending = True
        # module names are needed to name rectifier calls; gradients skip the per-call cost
        missed = install_stack_hooks(run, mode, handles) if record else []
        yield Session(
            run,
            mode,
            handles,
            dev,
            dtype,
            int(batch_size),
            missed,
            resolve_autocast(autocast, dev, caller),
            gather=gather,
        )
