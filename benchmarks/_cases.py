"""The benchmark cases (models and inputs) and the reference implementations the probes race.

Every reference computes the same thing as the probe: the gradient of one scalar output per sample
with respect to that sample's input, batch by batch with the probe's batch size, the model in eval
mode, the result brought back to the host.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from benchmarks._harness import Config, Skip, Timings, describe_error, measure
from shatterkit import inputs, models

#: samples per forward/backward pass, for the probes and every reference
BATCH = 256

# captum warns once per call that it switched requires_grad on
warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")


@dataclass
class Case:
    """A model with its inputs: ``X`` as the probes take it, ``x`` as a float tensor on the host."""

    label: str
    model: nn.Module
    X: xr.DataArray
    output: int | None
    batch_size: int = BATCH
    batchnorm: bool = False

    @property
    def x(self) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.X.values, dtype=np.float32))

    @property
    def n(self) -> int:
        return int(self.X.sizes["sample"])


def paper_resnet(
    cfg: Config, n: int, *, blocks: int = 50, width: int = 200, batchnorm: bool = False
) -> Case:
    """The paper's residual MLP over ``n`` points of the line [-2, 2]."""
    model = models.resnet(blocks, width, batchnorm=batchnorm, seed=0).to(cfg.device).eval()
    bn = ", batchnorm=True" if batchnorm else ""
    label = f"resnet({blocks}, {width}{bn}), {n} x 1-D"
    return Case(label, model, inputs.line(n=n), None, batchnorm=batchnorm)


def images(n: int, size: int, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, 3, size, size), dtype=np.float32)
    return xr.DataArray(data, dims=("sample", "channel", "height", "width"))


def small_convnet(cfg: Config, n: int) -> Case:
    """A residual BN convnet (4 blocks, 16 channels) on 32x32 images; output: logit 0."""
    model = models.convnet(4, 16, residual=True, batchnorm=True, seed=0).to(cfg.device).eval()
    label = f"convnet(4, 16, residual, BN), {n} x 3x32x32"
    return Case(label, model, images(n, 32), 0, batchnorm=True)


def resnet18(cfg: Config, n: int) -> Case:
    """torchvision's resnet18 (random weights) at 224x224; output: logit 0."""
    try:
        import torchvision
    except ImportError:
        raise Skip(
            "torchvision is not installed in this environment; run the group with the vision "
            "venv: .venv-vision/bin/python -m benchmarks --only gradients"
        ) from None
    torch.manual_seed(0)  # torchvision draws its random weights from the global generator
    model = torchvision.models.resnet18(weights=None).to(cfg.device).eval()
    label = f"torchvision resnet18, {n} x 3x224x224"
    return Case(label, model, images(n, 224), 0, batch_size=n, batchnorm=True)


def probe_kwargs(case: Case, **kw: Any) -> dict[str, Any]:
    """The probes' arguments that match the references: the same batches, and batch norm with
    its running statistics, as in eval mode (unless ``kw`` says otherwise)."""
    out: dict[str, Any] = {"batch_size": case.batch_size, "progress": False, **kw}
    if case.batchnorm:
        out.setdefault("batchnorm", "eval")
    return out


# -- references -------------------------------------------------------------------------------------


def pick(out: torch.Tensor, output: int | None) -> torch.Tensor:
    """The scalar per sample the probes differentiate (``output=None``: the only one)."""
    return out.reshape(out.shape[0], -1)[:, output or 0]


def batches(case: Case, cfg: Config) -> list[torch.Tensor]:
    x = case.x
    return [x[i : i + case.batch_size] for i in range(0, case.n, case.batch_size)]


def floor(case: Case, cfg: Config) -> Callable[[], np.ndarray]:
    """The floor: one bare ``torch.autograd.grad`` of the summed output per batch."""
    parts = batches(case, cfg)
    model, output = case.model, case.output

    def run() -> np.ndarray:
        grads = []
        for xb in parts:
            xb = xb.to(cfg.device).requires_grad_(True)
            (g,) = torch.autograd.grad(pick(model(xb), output).sum(), xb)
            grads.append(g.detach().cpu())
        return torch.cat(grads).numpy()

    return run


def captum_saliency(case: Case, cfg: Config) -> Callable[[], np.ndarray]:
    """captum ``Saliency(abs=False)`` batch by batch (captum does not split batches itself)."""
    from captum.attr import Saliency

    parts = batches(case, cfg)
    sal = Saliency(case.model)
    target = case.output or 0

    def run() -> np.ndarray:
        grads = [
            sal.attribute(xb.to(cfg.device), target=target, abs=False).detach().cpu()
            for xb in parts
        ]
        return torch.cat(grads).numpy()

    return run


def vmap_grad(case: Case, cfg: Config) -> Callable[[], np.ndarray]:
    """``torch.func.vmap(torch.func.grad(f))`` batch by batch, ``f`` the model on one sample."""
    model, output = case.model, case.output
    parts = batches(case, cfg)

    def one(xi: torch.Tensor) -> torch.Tensor:
        return pick(model(xi.unsqueeze(0)), output)[0]

    per_sample = torch.func.vmap(torch.func.grad(one))

    def run() -> np.ndarray:
        return torch.cat([per_sample(xb.to(cfg.device)).detach().cpu() for xb in parts]).numpy()

    return run


def loop(case: Case, cfg: Config, m: int) -> Callable[[], np.ndarray]:
    """A Python loop of one forward and one backward per sample, over the first ``m`` samples."""
    model, output = case.model, case.output
    x = case.x[:m]

    def run() -> np.ndarray:
        grads = []
        for i in range(m):
            xi = x[i : i + 1].to(cfg.device).requires_grad_(True)
            (g,) = torch.autograd.grad(pick(model(xi), output).sum(), xi)
            grads.append(g.detach().cpu())
        return torch.cat(grads).numpy()

    return run


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference, relative to the largest magnitude of ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def agreement(results: dict[str, Any], reference: str) -> dict[str, str]:
    """A note per contender: its largest relative difference from the reference's gradients.

    A result is an array (the first samples of the reference's are compared) or a list of
    arrays, one per layer (compared with the reference's last layers).
    """
    ref = results.get(reference)
    notes = {}
    for name, value in results.items():
        if name == reference or ref is None or not isinstance(value, (np.ndarray, list)):
            continue
        if isinstance(value, list):
            d = max(max_abs_diff(v, r) for v, r in zip(value, ref[-len(value) :], strict=True))
        else:
            d = max_abs_diff(value, ref[: len(value)])
        notes[name] = f"max|d|/max|g| = {d:.1e}"
    return notes


def optional(factory: Callable[[], Callable[[], Any]]) -> Callable[[], Any]:
    """The contender ``factory()`` builds, or, when an optional package is missing, one that
    raises the ImportError when run, so its row says why instead of the whole group failing."""
    try:
        return factory()
    except ImportError as err:
        reason = err

        def missing() -> Any:
            raise reason

        return missing


def race(
    contenders: Mapping[str, Callable[[], Any]],
    cfg: Config,
    *,
    reference: str,
    reps: int | None = None,
    scale: dict[str, float] | None = None,
) -> tuple[Timings, dict[str, str]]:
    """Run every contender once (the warm-up, which also checks that its gradients agree with
    ``reference``'s), then time them interleaved. Returns the timings and a note per contender."""
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, fn in contenders.items():
        try:
            results[name] = fn()
            cfg.sync()
        except Exception as err:  # noqa: BLE001 - a failing contender is reported, not fatal
            errors[name] = describe_error(err)
    live = {name: fn for name, fn in contenders.items() if name not in errors}
    timings = measure(live, cfg, reps=reps, warmup=0, scale=scale)
    timings.errors.update(errors)
    return timings, agreement(results, reference)
