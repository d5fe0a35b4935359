"""``autocast="bfloat16"`` (and float16 on CUDA): the error of the gradients against float32, and
the speed. GPU-relevant: bfloat16 pays off on tensor cores; on a CPU without AMX it is usually
slower. float32 against float64 is given as the scale of ordinary rounding error.
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import xarray as xr

from benchmarks import _cases as cases
from benchmarks._harness import INFO, Column, Config, Table, measure
from shatterkit import input_gradients, metrics

F32 = "float32"


def _errors(g: np.ndarray, ref: np.ndarray, t: np.ndarray | None) -> dict[str, float]:
    """max |d| / max |ref|, the median and 99th percentile of the per-sample relative L2 error,
    and the change of the shattering index 1 - rho(1) along a path."""
    g64, r64 = (
        g.reshape(len(g), -1).astype(np.float64),
        ref.reshape(len(ref), -1).astype(np.float64),
    )
    per_sample = np.linalg.norm(g64 - r64, axis=1) / np.maximum(np.linalg.norm(r64, axis=1), 1e-30)
    out = {
        "max_rel": float(np.abs(g64 - r64).max() / max(np.abs(r64).max(), 1e-30)),
        "sample_median": float(np.median(per_sample)),
        "sample_p99": float(np.quantile(per_sample, 0.99)),
    }
    if t is not None:
        out["d_shatter"] = _shattering(g64, t) - _shattering(r64, t)
    return out


def _shattering(g: np.ndarray, t: np.ndarray) -> float:
    """1 - rho(1) of gradients ``g`` (sample, feature) along a path with parameter ``t``."""
    ds = xr.Dataset({"gradient": (("sample", "feature"), g)}, coords={"t": ("sample", t)})
    return float(1 - metrics.autocorrelation(ds, max_lag=1).sel(lag=1))


def run(cfg: Config) -> list[Table]:
    table = Table(
        "autocast",
        f"input_gradients under autocast against float32 on {cfg.device.type} (GPU-relevant)",
        "input_gradients in float32 (time); float32 gradients (errors)",
        columns=[
            Column("case", "case"),
            Column("contender", "contender"),
            Column("median_ms", "median ms", "{:.4g}"),
            Column("ratio", "time ratio", "{:.3f}"),
            Column("max_rel", "max|d|/max|g|", "{:.2e}"),
            Column("sample_median", "per-sample rel. L2, median", "{:.2e}"),
            Column("sample_p99", "p99", "{:.2e}"),
            Column("d_shatter", "d shattering index", "{:+.1e}"),
            Column("verdict", "verdict"),
            Column("note", "note"),
        ],
    )
    dtypes = ["bfloat16"] + (["float16"] if cfg.device.type == "cuda" else [])
    for case in (
        cases.paper_resnet(cfg, cfg.pick(256, 4096)),
        cases.small_convnet(cfg, cfg.pick(64, 256)),
    ):
        kw = cases.probe_kwargs(case, output=case.output)
        contenders = {
            F32: partial(input_gradients, case.model, case.X, **kw),
            **{
                f"autocast={d}": partial(input_gradients, case.model, case.X, autocast=d, **kw)
                for d in dtypes
            },
        }
        results = {name: fn()["gradient"].values for name, fn in contenders.items()}
        timings = measure(contenders, cfg, reps=cfg.pick(2, 3), warmup=0)
        t = case.X["t"].values if "t" in case.X.coords else None
        for name in contenders:
            errors = _errors(results[name], results[F32], t) if name != F32 else {}
            table.rows.append(
                {
                    "case": case.label,
                    "contender": name,
                    "median_ms": 1e3 * (timings.median(name) or np.nan),
                    "ratio": timings.ratio(name, F32),
                    **errors,
                    "verdict": "baseline" if name == F32 else INFO,
                    "note": f"1 - rho(1) = {_shattering(results[F32].reshape(case.n, -1), t):.3f}"
                    if name == F32 and t is not None
                    else "",
                }
            )
        if not cfg.quick:
            model64 = copy.deepcopy(case.model).double()
            x64 = case.X.astype(np.float64)
            g64 = input_gradients(model64, x64, **kw)["gradient"].values
            table.rows.append(
                {
                    "case": case.label,
                    "contender": "float32 against float64",
                    **_errors(results[F32], g64, t),
                    "verdict": INFO,
                    "note": "the rounding error float32 already has",
                }
            )
    table.notes += [
        "no target in issue 6: the error is measured and stated; bfloat16 keeps 8 bits of "
        "mantissa (relative rounding 2^-9 = 2.0e-3 per operation)",
        "d shattering index: change of 1 - rho(1) (lag-1 autocorrelation along the line), the "
        "quantity the paper's figures are about",
    ]
    return [table]
