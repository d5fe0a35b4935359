"""Side-by-side timing, ratio tables and profiles: the machinery every benchmark group shares.

Contenders are timed interleaved within each repetition (the order rotates from one repetition to
the next), so a slow spell of a shared machine hits all of them alike. Each ratio is the median
over repetitions of the *paired* ratio ``t_contender[r] / t_baseline[r]``; absolute medians are
printed for context only, never as the verdict.
"""

from __future__ import annotations

import cProfile
import gc
import json
import math
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: verdicts a row can carry
PASS, GAP, BASELINE, INFO, SKIP = "PASS", "GAP", "baseline", "info", "skip"


@dataclass(frozen=True)
class Config:
    """What every group needs to know about this run."""

    quick: bool = False
    device: torch.device = torch.device("cpu")
    reps: int = 5

    def sync(self) -> None:
        """Wait for the device, so a timing includes the work it queued."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def clock(self) -> float:
        """Seconds: process CPU time on the CPU, so that other jobs sharing the cores do not
        count (torch runs one intra-op thread here); wall time on an accelerator."""
        return time.perf_counter() if self.device.type != "cpu" else time.process_time()

    @property
    def clock_name(self) -> str:
        return "wall time" if self.device.type != "cpu" else "process CPU time"


class Skip(Exception):
    """A case that cannot run here; the message says why and what would make it run."""


# -- targets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """``t / t_ref <= limit`` (``kind="ratio"``) or ``t_ref / t >= limit`` (``kind="speedup"``).

    ``proposed`` marks targets the issue does not state (set here so each row has a verdict).
    """

    ref: str
    limit: float
    kind: str = "ratio"
    proposed: bool = False

    def describe(self) -> str:
        tail = " (proposed)" if self.proposed else ""
        if self.kind == "speedup":
            return f">= {self.limit:g}x faster than {self.ref}{tail}"
        return f"<= {self.limit:g}x {self.ref}{tail}"

    def verdict(self, measured: float | None) -> str:
        if measured is None or not math.isfinite(measured):
            return SKIP
        ok = measured >= self.limit if self.kind == "speedup" else measured <= self.limit
        return PASS if ok else GAP


# -- timing -----------------------------------------------------------------------------------------


@dataclass
class Timings:
    """Seconds per repetition for each contender (same repetitions, interleaved)."""

    times: dict[str, list[float]]
    errors: dict[str, str] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        t = self.times.get(name)
        return statistics.median(t) if t else None

    def paired(self, a: str, b: str) -> list[float]:
        ta, tb = self.times.get(a), self.times.get(b)
        if not ta or not tb:
            return []
        return [x / y for x, y in zip(ta, tb, strict=True)]

    def ratio(self, a: str, b: str) -> float | None:
        """Median over repetitions of ``t_a / t_b``."""
        p = self.paired(a, b)
        return statistics.median(p) if p else None

    def ratio_iqr(self, a: str, b: str) -> tuple[float, float] | None:
        p = self.paired(a, b)
        if len(p) < 2:
            return None
        q = np.quantile(p, [0.25, 0.75])
        return float(q[0]), float(q[1])

    def measured(self, name: str, target: Target) -> float | None:
        r = self.ratio(name, target.ref)
        if r is None:
            return None
        return 1.0 / r if target.kind == "speedup" else r


def measure(
    contenders: Mapping[str, Callable[[], Any]],
    cfg: Config,
    *,
    reps: int | None = None,
    warmup: int = 1,
    scale: dict[str, float] | None = None,
) -> Timings:
    """Time every contender ``reps`` times, interleaved; ``scale`` multiplies a contender's times
    (a per-sample loop timed on a subset and extrapolated to the whole set).

    A contender that raises is dropped from the timings and its error kept in ``errors``.
    """
    reps = reps or cfg.reps
    scale = scale or {}
    names = list(contenders)
    errors: dict[str, str] = {}
    for name in names:
        for _ in range(warmup):
            try:
                contenders[name]()
                cfg.sync()
            except Exception as err:  # noqa: BLE001 - a failing contender is reported, not fatal
                errors[name] = describe_error(err)
                break
    live = [n for n in names if n not in errors]
    times: dict[str, list[float]] = {n: [] for n in live}
    # A full collection scans every object torch and xarray made at import (a third of a second
    # here): collect once, then freeze the survivors so later collections only see new objects.
    gc.collect()
    gc.freeze()
    for r in range(reps):
        order = live[r % len(live) :] + live[: r % len(live)] if live else []
        gc.collect()
        for name in order:
            gc.disable()
            try:
                cfg.sync()
                start = cfg.clock()
                contenders[name]()
                cfg.sync()
                times[name].append((cfg.clock() - start) * scale.get(name, 1.0))
            finally:
                gc.enable()
    return Timings(times, errors)


def describe_error(err: BaseException) -> str:
    """``Type: first line of the message`` (shortened), for a row whose contender failed."""
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[0][:120]}"


# -- tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str = "{}"

    def format(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if isinstance(value, (tuple, list)):
            return "-".join(self.fmt.format(v) for v in value)
        return self.fmt.format(value)


TIMING_COLUMNS = [
    Column("case", "case"),
    Column("contender", "contender"),
    Column("median_ms", "median ms", "{:.4g}"),
    Column("ratio", "ratio", "{:.3f}"),
    Column("ratio_iqr", "ratio IQR", "{:.2f}"),
    Column("target", "target"),
    Column("measured", "measured", "{:.3f}"),
    Column("verdict", "verdict"),
    Column("note", "note"),
]


@dataclass
class Table:
    """One printed table; ``rows`` hold raw values (what ``--json`` writes)."""

    name: str
    title: str
    baseline: str
    columns: list[Column] = field(default_factory=lambda: list(TIMING_COLUMNS))
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    def add_timings(
        self,
        case: str,
        timings: Timings,
        baseline: str,
        *,
        targets: Mapping[str, Target | list[Target]] | None = None,
        notes: dict[str, str] | None = None,
        order: Sequence[str] | None = None,
    ) -> None:
        """One row per contender: median, paired ratio to ``baseline``, target and verdict."""
        targets = targets or {}
        notes = notes or {}
        for name in order or [*timings.times, *timings.errors]:
            if name in timings.errors:
                self.rows.append(
                    {"case": case, "contender": name, "verdict": SKIP, "note": timings.errors[name]}
                )
                continue
            if name not in timings.times:
                continue
            given = targets.get(name) or []
            wanted: list[Target | None] = [given] if isinstance(given, Target) else [*given]
            for k, target in enumerate(wanted or [None]):
                measured = timings.measured(name, target) if target else None
                verdict = BASELINE if name == baseline else INFO
                if target:
                    verdict = target.verdict(measured)
                row: dict[str, Any] = {"case": case, "contender": name}
                if k and target:
                    row["contender"] = f"  (same, vs {target.ref})"
                if k == 0:
                    row.update(
                        median_ms=1e3 * (timings.median(name) or math.nan),
                        ratio=timings.ratio(name, baseline),
                        ratio_iqr=timings.ratio_iqr(name, baseline),
                        note=notes.get(name, ""),
                    )
                row.update(
                    target=target.describe() if target else "", measured=measured, verdict=verdict
                )
                self.rows.append(row)

    def skip(self, case: str, reason: str) -> None:
        self.rows.append({"case": case, "contender": "(all)", "verdict": SKIP, "note": reason})

    @property
    def gaps(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("verdict") == GAP]

    def render(self) -> str:
        cells = [[c.header for c in self.columns]]
        for row in self.rows:
            cells.append([c.format(row.get(c.key)) for c in self.columns])
        keep = [
            j for j in range(len(self.columns)) if any(r[j] not in ("", "-") for r in cells[1:])
        ]
        cells = [[r[j] for j in keep] for r in cells]
        widths = [max(len(r[j]) for r in cells) for j in range(len(keep))]
        lines = [f"== {self.name}: {self.title}", f"   ratios against: {self.baseline}"]
        for i, r in enumerate(cells):
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += [f"   * {n}" for n in self.notes]
        for label, text in self.profiles.items():
            lines.append(f"   profile: {label}")
            lines += [f"     {line}" for line in text.splitlines()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "baseline": self.baseline,
            "columns": {c.key: c.header for c in self.columns},
            "rows": [{k: _jsonable(v) for k, v in r.items()} for r in self.rows],
            "notes": self.notes,
            "profiles": self.profiles,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def environment(cfg: Config) -> dict[str, Any]:
    """What a reader needs to interpret the ratios."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(cfg.device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "quick": cfg.quick,
        "reps": cfg.reps,
        "clock": cfg.clock_name,
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if cfg.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(cfg.device)
    return info


def write_json(path: str, cfg: Config, tables: list[Table], env: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump({"environment": env, "tables": [t.to_dict() for t in tables]}, f, indent=1)


# -- profiles ---------------------------------------------------------------------------------------


def _profile(fn: Callable[[], Any]) -> pstats.Stats:
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return pstats.Stats(prof)


def _label(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    parts = filename.replace(os.sep, "/").split("/")
    short = (
        "/".join(parts[-2:])
        if "shatterkit" not in parts
        else "/".join(parts[parts.index("shatterkit") :])
    )
    return f"{short}:{line}({func})"


def profile(fn: Callable[[], Any], *, top: int = 8, focus: str = "shatterkit") -> str:
    """Where the time of one call of ``fn`` goes, as text: the ``top`` functions by own time
    (tottime) over everything, then the ``top`` functions of ``focus`` by cumulative time, each as
    a fraction of the profiled total. cProfile inflates Python-level costs (hooks, dispatch)
    relative to the C++ kernels, so read the fractions as upper bounds for Python code."""
    stats = _profile(fn)
    total = max(stats.total_tt, 1e-12)  # type: ignore[attr-defined]
    entries = stats.stats  # type: ignore[attr-defined]
    by_tot = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    mine = [kv for kv in entries.items() if focus in kv[0][0].replace(os.sep, "/")]
    by_cum = sorted(mine, key=lambda kv: kv[1][3], reverse=True)[1 : top + 1]
    lines = [f"total {1e3 * total:.1f} ms under cProfile; own time (tottime):"]
    lines += [f"  {v[2] / total:6.1%}  {_label(k)}  x{v[1]}" for k, v in by_tot]
    lines.append(f"{focus} functions by cumulative time:")
    lines += [f"  {v[3] / total:6.1%}  {_label(k)}  x{v[1]}" for k, v in by_cum]
    return "\n".join(lines)


def breakdown(
    fn: Callable[[], Any], parts: dict[str, list[tuple[str, str, str]]]
) -> dict[str, float]:
    """Fraction of one profiled call of ``fn`` spent in each labelled part.

    A part is a list of ``(path suffix, function name, "cum" | "tot")``; functions that do not
    exist (renamed in the package) count 0. The fractions can overlap (nested functions).
    """
    stats = _profile(fn)
    total = max(stats.total_tt, 1e-12)  # type: ignore[attr-defined]
    entries = stats.stats  # type: ignore[attr-defined]
    out = {}
    for label, specs in parts.items():
        seconds = 0.0
        for suffix, func, kind in specs:
            for (filename, _, name), v in entries.items():
                if name == func and filename.replace(os.sep, "/").endswith(suffix):
                    seconds += v[3] if kind == "cum" else v[2]
        out[label] = seconds / total
    out["(profiled total, s)"] = total
    return out
