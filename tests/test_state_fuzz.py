"""Fuzzing: whatever the model and wherever it fails, a probe leaves the model as it found it.

Random small models (Linear/Conv, BatchNorm in train mode, Dropout, in-place and plain ReLU and
LeakyReLU, residual wrappers, modules called twice or registered under two names, random
``requires_grad`` and train/eval flags per submodule) are probed while a forward hook or pre-hook
on a random module raises an exception (or ``KeyboardInterrupt``) on a random call: during the
population-statistics passes, the gradient or pattern pass, or a later batch. Afterwards every
flag, hook, parameter, gradient and buffer (BatchNorm running statistics and
``num_batches_tracked`` included) must be as before, and so must the inputs and torch's global
modes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from shatterkit import ActivationProbe, GradientProbe, activation_patterns, input_gradients

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")


# Hypothesis runs many tiny cases: 395 in about 10 s on two shared cores (budget: a minute).
def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


class Boom(Exception):
    """The injected failure."""


# -- random models --------------------------------------------------------------------------------


@dataclass
class Spec:
    """A model, its flags, the probe to run on it and the failure to inject."""

    image: bool
    ops: list[Any]
    n: int
    seed: int
    flags: list[bool] = field(default_factory=list)  # train/eval per module, in modules() order
    grads: list[bool] = field(default_factory=list)  # requires_grad per parameter
    probe: str = "gradient"
    batchnorm: str = "population"
    batch_size: int | str = 2
    layers: Any = None
    packed: bool = False
    estimator: bool = False
    ensemble: bool = False
    fail_module: int = 0
    fail_pre: bool = True
    fail_call: int = 1
    interrupt: bool = False


def _op(width_preserving: bool, image: bool, depth: int) -> st.SearchStrategy:
    leaf = st.one_of(
        st.tuples(st.just("affine"), st.integers(2, 4) if not width_preserving else st.none()),
        st.tuples(st.just("bn"), st.booleans(), st.booleans()),  # track_running_stats, affine
        st.tuples(st.just("dropout"), st.sampled_from([0.0, 0.5])),
        st.tuples(st.just("relu"), st.booleans()),  # inplace
        st.tuples(st.just("leaky"), st.booleans()),
        st.tuples(st.just("reuse"), st.integers(0, 20)),  # call an earlier module again
        st.tuples(st.just("stateful"), st.none()),  # writes its buffers in every forward
    )
    if depth >= 1:
        return leaf
    residual = st.tuples(st.just("residual"), st.lists(_op(True, image, depth + 1), max_size=3))
    return st.one_of(leaf, residual)


@st.composite
def specs(draw: Any, *, probes: tuple[str, ...] = ("gradient", "activation")) -> Spec:
    image = draw(st.integers(0, 3)) == 0
    ops = draw(st.lists(_op(False, image, 0), min_size=1, max_size=6))
    # every model has a rectifier, so ActivationProbe has something to record
    ops.append(("relu", draw(st.booleans())))
    spec = Spec(image=image, ops=ops, n=draw(st.integers(2, 5)), seed=draw(st.integers(0, 99)))
    model = build(spec)
    n_modules, n_params = len(list(model.modules())), len(list(model.parameters()))
    spec.flags = draw(st.lists(st.booleans(), min_size=n_modules, max_size=n_modules))
    spec.grads = draw(st.lists(st.booleans(), min_size=n_params, max_size=n_params))
    spec.probe = draw(st.sampled_from(probes))
    tracks = all(m.track_running_stats for m in model.modules() if isinstance(m, _BN))
    modes = ["population", "coupled"] + (["eval"] if tracks else [])
    spec.batchnorm = draw(st.sampled_from(modes))
    spec.batch_size = draw(st.one_of(st.integers(1, spec.n + 1), st.just("auto")))
    names = [name for name, _ in model.named_modules() if name and name != "mods"]
    spec.layers = draw(
        st.one_of(st.none(), st.just("all"), st.lists(st.sampled_from(names), min_size=1))
    )
    spec.packed = draw(st.booleans())
    spec.estimator = draw(st.booleans())
    spec.ensemble = draw(st.integers(0, 9)) == 0
    spec.fail_module = draw(st.integers(0, n_modules - 1))
    spec.fail_pre = draw(st.booleans())
    # calls 1-2 land in the batch-norm detection and statistics passes, later ones in the probe
    spec.fail_call = draw(st.integers(1, 10))
    spec.interrupt = draw(st.booleans())
    return spec


_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stateful(nn.Module):
    """Updates buffers in place on every call, whatever its mode (as some EMA layers do)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        with torch.no_grad():
            self.ema.mul_(0.9).add_(
                0.1 * x.detach().flatten(2).mean((0, -1))
                if x.dim() > 2
                else 0.1 * x.detach().mean(0)
            )
        return x * (self.scale[:, None, None] if x.dim() > 2 else self.scale)


class Net(nn.Module):
    """Calls ``mods`` in the order of ``plan`` (an index may repeat: a module called twice)."""

    def __init__(self, mods: list[nn.Module], plan: list[int], head: nn.Module) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.plan = plan
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.plan:
            x = self.mods[i](x)
        return self.head(x)


def _make(op: Any, width: int, image: bool, made: list[tuple[nn.Module, int]]) -> tuple[Any, int]:
    """The module of ``op`` (or an index into ``made`` for a reuse) and its output width."""
    kind = op[0]
    if kind == "affine":
        out = width if op[1] is None else op[1]
        mod: nn.Module = nn.Conv2d(width, out, 3, padding=1) if image else nn.Linear(width, out)
        return mod, out
    if kind == "bn":
        bn = nn.BatchNorm2d if image else nn.BatchNorm1d
        return bn(width, track_running_stats=op[1], affine=op[2]), width
    if kind == "dropout":
        return (nn.Dropout2d if image else nn.Dropout)(op[1]), width
    if kind == "relu":
        return nn.ReLU(inplace=op[1]), width
    if kind == "leaky":
        return nn.LeakyReLU(0.1, inplace=op[1]), width
    if kind == "stateful":
        return Stateful(width), width
    if kind == "reuse":
        same = [k for k, (_, w) in enumerate(made) if w == width]
        if not same:
            return nn.ReLU(), width
        return same[op[1] % len(same)], width
    body = []
    for inner in op[1]:
        m, _ = _make(inner, width, image, made)
        # a reused module inside a residual is registered under a second name
        body.append(made[m][0] if isinstance(m, int) else m)
    return Residual(nn.Sequential(*body)), width


def build(spec: Spec, seed_offset: int = 0) -> nn.Module:
    width = 2
    mods: list[nn.Module] = []
    made: list[tuple[nn.Module, int]] = []  # every module built so far, with its width
    plan: list[int] = []
    for op in spec.ops:
        made_or_index, out = _make(op, width, spec.image, made)
        m = made[made_or_index][0] if isinstance(made_or_index, int) else made_or_index
        if not isinstance(made_or_index, int) and out == width:
            made.append((m, width))  # may be called again later
        if not any(m is other for other in mods):
            mods.append(m)
        plan.append(next(k for k, other in enumerate(mods) if other is m))
        width = out
    head: nn.Module = (
        nn.Sequential(nn.Flatten(), nn.Linear(width * 4, 1)) if spec.image else nn.Linear(width, 1)
    )
    model = Net(mods, plan, head).double()
    g = torch.Generator().manual_seed(spec.seed + seed_offset)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.8)
        for m in model.modules():
            if isinstance(m, _BN) and m.track_running_stats:
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.num_batches_tracked.fill_(int(torch.randint(0, 50, (), generator=g)))
    return model


def flag(model: nn.Module, spec: Spec) -> nn.Module:
    for m, training in zip(model.modules(), spec.flags, strict=True):
        m.training = training
    for p, requires in zip(model.parameters(), spec.grads, strict=True):
        p.requires_grad_(requires)
    return model


def inputs(spec: Spec) -> torch.Tensor:
    g = torch.Generator().manual_seed(spec.seed + 1000)
    shape = (spec.n, 2, 2, 2) if spec.image else (spec.n, 2)
    return torch.randn(shape, generator=g, dtype=torch.float64)


# -- what must not change -------------------------------------------------------------------------

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def snapshot(model: nn.Module) -> dict[str, Any]:
    from torch.nn.modules import module as module_globals

    return {
        "modules": [(n, id(m)) for n, m in model.named_modules(remove_duplicate=False)],
        "training": [m.training for m in model.modules()],
        "hooks": [{d: len(getattr(m, d, {})) for d in _HOOK_DICTS} for m in model.modules()],
        "global_hooks": [
            len(getattr(module_globals, d))
            for d in dir(module_globals)
            if d.startswith("_global_") and d.endswith("hooks")
        ],
        "params": [
            (n, id(p), p.detach().clone(), p.requires_grad, p.grad)
            for n, p in model.named_parameters()
        ],
        "buffers": [(n, id(b), b.detach().clone()) for n, b in model.named_buffers()],
        "grad_enabled": torch.is_grad_enabled(),
        "function_modes": torch._C._len_torch_function_stack(),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("modules", "training", "hooks", "global_hooks", "grad_enabled", "function_modes"):
        assert before[key] == after[key], key
    for kind in ("params", "buffers"):
        assert len(before[kind]) == len(after[kind])
        for old, new in zip(before[kind], after[kind], strict=True):
            assert old[:2] == new[:2], f"{kind} {old[0]} was replaced"
            assert old[2].dtype == new[2].dtype and torch.equal(old[2], new[2]), (
                f"{kind} {old[0]} changed"
            )
            assert old[3:] == new[3:], f"{kind} {old[0]}: requires_grad or .grad changed"


# -- running a probe ------------------------------------------------------------------------------


def inject(model: nn.Module, spec: Spec) -> Any:
    target = list(model.modules())[spec.fail_module]
    calls = [0]
    error: type[BaseException] = KeyboardInterrupt if spec.interrupt else Boom

    def fail(*_: Any) -> None:
        calls[0] += 1
        if calls[0] == spec.fail_call:
            raise error(f"injected at call {spec.fail_call}")

    if spec.fail_pre:
        return target.register_forward_pre_hook(fail)
    return target.register_forward_hook(fail)


def _phase() -> str:
    """Where the exception being handled was raised: which pass of the probe."""
    import sys
    import traceback

    names = [f.name for f in traceback.extract_tb(sys.exc_info()[2])]
    if "population_statistics" in names:
        return "statistics pass"
    if "auto_batch_size" in names:
        return "batch-size pass"
    return "probe pass"


def run_probe(spec: Spec, model: Any, x: torch.Tensor, store: Any = None) -> xr.Dataset:
    kw: dict[str, Any] = {"batchnorm": spec.batchnorm, "batch_size": spec.batch_size}
    if spec.probe == "gradient":
        kw["layers"] = spec.layers
        if spec.estimator:
            return GradientProbe(model, **kw).fit(x).transform(x, store=store)
        return input_gradients(model, x, store=store, **kw)
    kw["packed"] = spec.packed
    if spec.estimator:
        return ActivationProbe(model, **kw).fit(x).transform(x, store=store)
    return activation_patterns(model, x, store=store, **kw)


def check(spec: Spec, *, fail: bool, store: Any = None) -> None:
    members = [flag(build(spec, offset), spec) for offset in range(2 if spec.ensemble else 1)]
    handles = [inject(m, spec) for m in members] if fail else []
    x = inputs(spec)
    x0 = x.clone()
    before = [snapshot(m) for m in members]
    model: Any = members if spec.ensemble else members[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. non-finite gradients of a degenerate model
        try:
            ds = run_probe(spec, model, x, store)
        except (Boom, KeyboardInterrupt) as err:
            assert fail
            event(f"{type(err).__name__} in the {_phase()} ({spec.probe}, {spec.batchnorm})")
        except RuntimeError as err:
            # e.g. ReLU then ReLU(inplace=True): plain autograd refuses such a model too
            assert spec.probe == "gradient" and "modified by an inplace operation" in str(err)
            event("model refused by autograd")
        else:
            event(f"completed ({spec.probe}, {spec.batchnorm})")
            variable = "gradient" if spec.probe == "gradient" else "pattern"
            assert ds[variable].sizes["sample"] == spec.n
    for m, b in zip(members, before, strict=True):
        assert_unchanged(b, snapshot(m))
    assert torch.equal(x, x0) and not x.requires_grad
    for h in handles:
        h.remove()


@fuzz(300)
@given(spec=specs())
def test_failure_anywhere_in_the_forward_leaves_the_model_unchanged(spec: Spec) -> None:
    check(spec, fail=True)


@fuzz(80)
@given(spec=specs())
def test_successful_probe_leaves_the_model_unchanged(spec: Spec) -> None:
    check(spec, fail=False)


@fuzz(15)
@given(spec=specs(), fail=st.booleans())
def test_streaming_to_zarr_leaves_the_model_unchanged(
    spec: Spec, fail: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("zarr", reason="needs the io extra")
    check(spec, fail=fail, store=tmp_path_factory.mktemp("fuzz") / "s.zarr")
