"""Layer-resolved gradients: ``layers="all"`` in one pass against captum called once per layer.

Target (issue 6): at least 5x faster than captum's ``LayerGradientXActivation`` (with
``multiply_by_inputs=False``, i.e. the plain gradient with respect to the layer's output) called
once per layer on the paper's 50-block net.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks import _cases as cases
from benchmarks._harness import Config, Table, Target, profile
from shatterkit import input_gradients

PROBE = "input_gradients(layers='all')"
FLOOR = "floor: one autograd.grad, all layers"
PER_LAYER = "captum LayerGradientXActivation, once per layer"
ONE_CALL = "captum LayerGradientXActivation, all layers in one call"


def _leaves(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not any(m.children())]


def _floor(case: cases.Case, cfg: Config) -> Callable[[], list[np.ndarray]]:
    """One forward with hooks that keep every leaf module's output, one ``autograd.grad``."""
    leaves = [m for _, m in _leaves(case.model)]
    parts = cases.batches(case, cfg)

    def run() -> list[np.ndarray]:
        outs: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _a, o: outs.append(o)) for m in leaves]
        try:
            grads = []
            for xb in parts:
                outs.clear()
                xb = xb.to(cfg.device).requires_grad_(True)
                y = cases.pick(case.model(xb), case.output).sum()
                g = torch.autograd.grad(y, [xb, *outs])
                grads.append([t.detach().cpu() for t in g])
        finally:
            for h in handles:
                h.remove()
        return [torch.cat(k).numpy() for k in zip(*grads, strict=True)]

    return run


def _captum(case: cases.Case, cfg: Config, *, per_layer: bool) -> Callable[[], Any]:
    from captum.attr import LayerGradientXActivation

    leaves = [m for _, m in _leaves(case.model)]
    parts = cases.batches(case, cfg)
    target = case.output or 0
    if per_layer:
        methods = [
            LayerGradientXActivation(case.model, m, multiply_by_inputs=False) for m in leaves
        ]
    else:
        methods = [LayerGradientXActivation(case.model, leaves, multiply_by_inputs=False)]

    def run() -> list[np.ndarray]:
        per_batch = [
            [m.attribute(xb.to(cfg.device), target=target) for xb in parts] for m in methods
        ]
        if not per_layer:  # one call: a list over layers for each batch
            per_batch = [list(layer) for layer in zip(*per_batch[0], strict=True)]
        return [torch.cat(b).detach().cpu().numpy() for b in per_batch]

    return run


def _probe(case: cases.Case) -> Callable[[], list[np.ndarray]]:
    names = [n for n, _ in _leaves(case.model)]

    def run() -> list[np.ndarray]:
        ds = input_gradients(
            case.model, case.X, layers="all", batch_size=case.batch_size, progress=False
        )
        return [ds["gradient"].values] + [ds[f"gradient:{n}"].values for n in names]

    return run


def run(cfg: Config) -> list[Table]:
    # one batch: captum's cost and the probe's both grow linearly with the number of batches
    case = cases.paper_resnet(cfg, 256, blocks=cfg.pick(10, 50))
    n_layers = len(_leaves(case.model))
    contenders = {
        FLOOR: _floor(case, cfg),
        PROBE: _probe(case),
        PER_LAYER: cases.optional(lambda: _captum(case, cfg, per_layer=True)),
        ONE_CALL: cases.optional(lambda: _captum(case, cfg, per_layer=False)),
    }
    timings, agree = cases.race(contenders, cfg, reference=FLOOR, reps=cfg.pick(2, 3))
    table = Table(
        "layers",
        f"gradients w.r.t. the input and all {n_layers} leaf modules' outputs, batch size "
        f"{case.batch_size}",
        PER_LAYER,
    )
    table.add_timings(
        case.label,
        timings,
        PER_LAYER,
        targets={
            PROBE: [Target(PER_LAYER, 5.0, kind="speedup"), Target(FLOOR, 1.10, proposed=True)]
        },
        notes={
            **agree,
            PER_LAYER: f"{n_layers} calls, one forward and one backward each; {agree.get(PER_LAYER)}",
            ONE_CALL: f"a list of layers: one forward and one backward; {agree.get(ONE_CALL)}",
            FLOOR: "forward hooks keep every leaf output; one autograd.grad for all of them",
        },
        order=list(contenders),
    )
    table.notes.append(
        "ratio: t / t_captum-per-layer (below 1 is faster); measured: speed-up over captum per "
        "layer, or the ratio to the floor"
    )
    if not cfg.quick and table.gaps:
        table.profiles[f"{PROBE} on {case.label}"] = profile(contenders[PROBE])
    return [table]
