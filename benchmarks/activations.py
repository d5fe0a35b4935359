"""Activation patterns: ``ActivationProbe`` against a bare forward and captum ``LayerActivation``.

Targets (issue 6): the probe <= 1.3x a bare forward (``torch.no_grad``, same batches, eval mode);
packed patterns <= 1/8 of the bytes of bool ones.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from benchmarks import _cases as cases
from benchmarks._harness import BASELINE, Column, Config, Table, Target, profile
from shatterkit import ActivationProbe, activation_patterns

FLOOR = "floor: bare forward (no_grad)"
HOOKS = "forward + pre-hooks writing x > 0 into the result"
PROBE = "ActivationProbe"
PACKED = "activation_patterns(packed=True)"
CAPTUM = "captum LayerActivation (+ > 0)"


def _rectifiers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]


def _floor(case: cases.Case, cfg: Config) -> Callable[[], None]:
    parts = cases.batches(case, cfg)

    def run() -> None:
        with torch.no_grad():
            for xb in parts:
                case.model(xb.to(cfg.device))

    return run


def _hooks(case: cases.Case, cfg: Config) -> Callable[[], np.ndarray]:
    """The least a recorder can do: a pre-hook per ReLU module writing the sign of its input
    straight into the preallocated result (numpy's comparison on the CPU: 4-12x faster than
    torch's on one thread)."""
    parts = cases.batches(case, cfg)
    relus = _rectifiers(case.model)

    def run() -> np.ndarray:
        out: np.ndarray | None = None
        state = {"row": 0, "col": 0, "rows": 0}

        def keep(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().flatten(1)
            if out is None:
                kept.append(x > 0)
                return
            r, c, n = state["row"], state["col"], x.shape[1]
            dest = out[r : r + state["rows"], c : c + n]
            if x.device.type == "cpu":
                np.greater(x.numpy(), 0, out=dest)
            else:
                dest[...] = (x > 0).cpu().numpy()
            state["col"] = c + n

        kept: list[torch.Tensor] = []
        handles = [m.register_forward_pre_hook(keep) for m in relus]
        try:
            with torch.no_grad():
                for xb in parts:
                    state.update(col=0, rows=xb.shape[0])
                    case.model(xb.to(cfg.device))
                    if out is None:  # the first batch tells the number of units
                        first = torch.cat(kept, dim=1).cpu().numpy()
                        out = np.empty((case.n, first.shape[1]), dtype=bool)
                        out[: xb.shape[0]] = first
                    state["row"] += xb.shape[0]
        finally:
            for h in handles:
                h.remove()
        assert out is not None
        return out

    return run


def _captum(case: cases.Case, cfg: Config) -> Callable[[], np.ndarray]:
    from captum.attr import LayerActivation

    parts = cases.batches(case, cfg)
    method = LayerActivation(case.model, _rectifiers(case.model))

    def run() -> np.ndarray:
        out = []
        for xb in parts:
            acts = method.attribute(xb.to(cfg.device))
            out.append(torch.cat([(a > 0).flatten(1) for a in acts], dim=1).cpu())
        return torch.cat(out).numpy()

    return run


def _estimator(case: cases.Case, kw: dict[str, Any]) -> Callable[[], np.ndarray]:
    probe = ActivationProbe(case.model, **kw)
    return lambda: probe.fit_transform(case.X)["pattern"].values


def run(cfg: Config) -> list[Table]:
    table = Table(
        "activations",
        "activation patterns of every rectifier call, batch size 256",
        f"{FLOOR} (same batches, eval mode)",
    )
    sizes = Table(
        "pattern-bytes",
        "memory of the patterns: packed bits against bool",
        "the bool pattern of the same Dataset",
        columns=[
            Column("case", "case"),
            Column("contender", "contender"),
            Column("bytes", "bytes", "{:,}"),
            Column("ratio", "ratio", "{:.4f}"),
            Column("target", "target"),
            Column("verdict", "verdict"),
        ],
    )
    for case in (
        cases.paper_resnet(cfg, cfg.pick(256, 4096)),
        cases.small_convnet(cfg, cfg.pick(64, 1024)),  # four batches: steadier than one
    ):
        kw = cases.probe_kwargs(case)
        contenders: dict[str, Callable[[], Any]] = {
            FLOOR: _floor(case, cfg),
            HOOKS: _hooks(case, cfg),
            PROBE: _estimator(case, kw),
            PACKED: partial(activation_patterns, case.model, case.X, packed=True, **kw),
            CAPTUM: cases.optional(partial(_captum, case, cfg)),
        }
        timings, agree = cases.race(contenders, cfg, reference=HOOKS)
        table.add_timings(
            case.label,
            timings,
            FLOOR,
            targets={PROBE: Target(FLOOR, 1.3), PACKED: Target(FLOOR, 1.3)},
            notes={**agree, HOOKS: "module ReLUs only (no functional calls, no names)"},
            order=list(contenders),
        )
        if not cfg.quick and any(r["case"] == case.label for r in table.gaps):
            table.profiles[f"{PROBE} on {case.label}"] = profile(contenders[PROBE])
        bool_ds = activation_patterns(case.model, case.X, **kw)
        packed_ds = activation_patterns(case.model, case.X, packed=True, **kw)
        np.testing.assert_array_equal(
            np.packbits(bool_ds["pattern"].values, axis=-1), packed_ds["pattern"].values
        )
        n_bool, n_packed = bool_ds["pattern"].nbytes, packed_ds["pattern"].nbytes
        units = bool_ds.sizes["unit"]
        sizes.rows += [
            {
                "case": f"{case.label}, {units} units",
                "contender": "bool",
                "bytes": n_bool,
                "ratio": 1.0,
                "verdict": BASELINE,
            },
            {
                "case": f"{case.label}, {units} units",
                "contender": "packed (uint8 bits)",
                "bytes": n_packed,
                "ratio": n_packed / n_bool,
                "target": "<= 0.125 bool",
                "verdict": "PASS" if n_packed / n_bool <= 0.125 else "GAP",
            },
        ]
    table.notes.append(
        "ratio: median over repetitions of t / t_floor; the packed and bool patterns were checked "
        "equal (numpy.packbits) before the byte counts"
    )
    return [table, sizes]
