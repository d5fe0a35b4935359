"""Metrics on 65,536 samples against plain numpy references.

Pattern metrics are compared on packed bits (popcount), on bool, and with the straightforward
unpacked-float computation (issue 6: "pattern metrics on packed bits rather than unpacked
floats"); target: packed <= 1.0x the float baseline. The gradient metrics have no target in the
issue; the proposed ones (<= 1.5x the numpy reference) are marked as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from benchmarks._cases import max_abs_diff
from benchmarks._harness import Config, Table, Target, Timings, measure, profile

N = 65_536
#: models in the gradient ensembles (the paper averages over random initialisations)
MODELS = 8
#: pattern layout: LAYERS layers of UNITS units
LAYERS, UNITS = 8, 64


def _available(name: str) -> Callable[..., Any] | None:
    try:
        from shatterkit import metrics
    except ImportError:
        return None
    return getattr(metrics, name, None)


def _race(
    table: Table,
    case: str,
    contenders: Mapping[str, Callable[[], Any]],
    baseline: str,
    cfg: Config,
    targets: Mapping[str, Target | list[Target]],
    reps: int | None = None,
) -> Timings:
    """Check every contender against the baseline's values, then time them interleaved."""
    results = {name: np.asarray(fn(), dtype=np.float64) for name, fn in contenders.items()}
    ref = results[baseline]
    notes = {
        name: f"max|d|/max|ref| = {max_abs_diff(value, ref):.1e}"
        for name, value in results.items()
        if name != baseline
    }
    timings = measure(contenders, cfg, reps=reps, warmup=0)
    table.add_timings(case, timings, baseline, targets=targets, notes=notes, order=list(contenders))
    return timings


# -- gradient metrics -------------------------------------------------------------------------------


def _numpy_correlation(g: np.ndarray) -> np.ndarray:
    """``E_model <g_i, g_j>`` normalised, for ``g`` of shape (model, sample, feature)."""
    flat = np.moveaxis(g, 0, 1).reshape(g.shape[1], -1)  # (sample, model * feature)
    flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)  # unit rows: one n x n pass
    return flat @ flat.T


def _numpy_acf(g: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation by FFT: sum_i <g_i - m, g_{i+k} - m> / sum_i |g_i - m|^2, model mean."""
    d = g - g.mean(axis=1, keepdims=True)
    n = d.shape[1]
    spectrum = np.fft.rfft(d, n=2 * n, axis=1)
    sums = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=1)[:, : max_lag + 1].sum(-1)
    return (sums / sums[:, :1]).mean(0)


def _gradient_tables(cfg: Config, table: Table) -> None:
    from shatterkit import noise

    covariance = _available("gradient_covariance")
    n_cov = cfg.pick(1024, 4096)
    if covariance is None:
        table.skip("gradient_covariance", "shatterkit.metrics.gradient_covariance is missing")
    else:
        ds = noise.brown(n_cov, n_models=MODELS, seed=0)
        g = ds["gradient"].values
        _race(
            table,
            f"gradient_covariance, {n_cov} samples x {MODELS} models (subset: 65,536^2 float64 "
            "is 34 GB)",
            {
                "numpy: unit rows, G G^T": lambda: _numpy_correlation(g),
                "metrics.gradient_covariance": lambda: covariance(ds).values,
            },
            "numpy: unit rows, G G^T",
            cfg,
            {"metrics.gradient_covariance": Target("numpy: unit rows, G G^T", 1.5, proposed=True)},
        )
    acf = _available("autocorrelation")
    if acf is None:
        table.skip("autocorrelation", "shatterkit.metrics.autocorrelation is missing")
        return
    n = cfg.pick(N // 8, N)
    ds = noise.brown(n, n_models=MODELS, seed=0)
    g = ds["gradient"].values
    for max_lag, label in ((64, "max_lag=64"), (n // 4, f"max_lag=None (n // 4 = {n // 4})")):
        kwargs: dict[str, Any] = {"max_lag": max_lag} if max_lag == 64 else {}
        timings = _race(
            table,
            f"autocorrelation, {n} samples x {MODELS} models, {label}",
            {
                "numpy: FFT": partial(_numpy_acf, g, max_lag),
                "metrics.autocorrelation": partial(acf, ds, **kwargs),
            },
            "numpy: FFT",
            cfg,
            {"metrics.autocorrelation": Target("numpy: FFT", 1.5, proposed=True)},
            reps=cfg.pick(2, 3),
        )
        ratio = timings.ratio("metrics.autocorrelation", "numpy: FFT")
        if not cfg.quick and ratio and ratio > 1.5:
            # the same call on an eighth of the samples: the same structure, 1/64 of the time
            small = noise.brown(n // 8, n_models=MODELS, seed=0)
            table.profiles[f"metrics.autocorrelation, {n // 8} samples, {label.split(' (')[0]}"] = (
                profile(partial(acf, small, **kwargs), top=5)
            )


# -- pattern metrics --------------------------------------------------------------------------------


def _patterns(n: int) -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """Random patterns (each unit on with probability 1/2): bool and packed Datasets, bits."""
    bits = np.random.default_rng(0).random((n, LAYERS * UNITS)) < 0.5
    coords = {
        "layer": ("unit", np.repeat([f"blocks.{k}.relu" for k in range(LAYERS)], UNITS)),
        "depth": ("unit", np.repeat(np.arange(1, LAYERS + 1), UNITS)),
    }
    bool_ds = xr.Dataset({"pattern": (("sample", "unit"), bits)}, coords=coords)
    packed = np.packbits(bits, axis=-1)
    packed_ds = xr.Dataset({"pattern": (("sample", "byte"), packed, {"packed": 1})}, coords=coords)
    return bool_ds, packed_ds, bits


def _float_pairs(bits: np.ndarray, statistic: str) -> np.ndarray:
    """All ordered pairs i != j, from per-unit counts of the float patterns."""
    p = bits.astype(np.float32)
    n = p.shape[0]
    c = p.sum(0, dtype=np.float64)
    per_unit = c * (c - 1) if statistic == "coactivation" else 2 * c * (n - c)
    return per_unit.reshape(LAYERS, UNITS).sum(-1) / (UNITS * n * (n - 1))


def _float_lagged(bits: np.ndarray, statistic: str, max_lag: int) -> np.ndarray:
    """Pairs (i, i + k) along the path, products (or |differences|) of float patterns."""
    p = bits.astype(np.float32)
    n = p.shape[0]
    out = np.empty((LAYERS, max_lag + 1))
    for k in range(max_lag + 1):
        a, b = p[: n - k], p[k:]
        pair = a * b if statistic == "coactivation" else np.abs(a - b)
        out[:, k] = pair.sum(0, dtype=np.float64).reshape(LAYERS, UNITS).sum(-1) / (UNITS * (n - k))
    return out


def _pattern_table(cfg: Config) -> Table:
    n = cfg.pick(N // 8, N)
    table = Table(
        "pattern-metrics",
        f"pattern metrics on {n:,} samples x {LAYERS * UNITS} units ({LAYERS} layers)",
        "numpy on unpacked float32 patterns (conversion from bool included)",
    )
    bool_ds, packed_ds, bits = _patterns(n)
    base = "numpy float32"
    for fname, statistic in (
        ("coactivation_rate", "coactivation"),
        ("pattern_dispersion", "dispersion"),
    ):
        fn = _available(fname)
        if fn is None:
            table.skip(fname, f"shatterkit.metrics.{fname} is missing")
            continue
        for max_lag in (None, 8):
            label = f"{fname}, " + ("all pairs" if max_lag is None else f"max_lag={max_lag}")

            ref = (
                partial(_float_pairs, bits, statistic)
                if max_lag is None
                else partial(_float_lagged, bits, statistic, max_lag)
            )
            _race(
                table,
                label,
                {
                    base: ref,
                    "packed (popcount)": partial(fn, packed_ds, max_lag=max_lag),
                    "bool": partial(fn, bool_ds, max_lag=max_lag),
                },
                base,
                cfg,
                {"packed (popcount)": Target(base, 1.0)},
                reps=cfg.pick(2, 3),
            )
    table.notes.append(
        "random patterns (each unit on with probability 1/2): the cost does not depend on the bits"
    )
    return table


def run(cfg: Config) -> list[Table]:
    table = Table(
        "gradient-metrics",
        "gradient metrics against plain numpy references",
        "the numpy reference of each row's case",
    )
    _gradient_tables(cfg, table)
    return [table, _pattern_table(cfg)]
