"""How the probe's cost grows with inputs, width and depth, as ratios to the floor.

One axis at a time around the paper's residual MLP: inputs 256 -> 4096 (width 200, 50 blocks),
width 50 -> 400 (1024 inputs, 50 blocks), depth 10 -> 50 blocks (1024 inputs, width 200). Each
row gives the probe's ratio to the floor (target <= 1.10x) and how both grow along the axis
(time over the time at the axis' first value).
"""

from __future__ import annotations

from typing import Any

from benchmarks import _cases as cases
from benchmarks._harness import Column, Config, Table, Target, measure
from benchmarks.gradients import FLOOR, PROBE, _probe

TARGET = Target(FLOOR, 1.10)


def _axes(cfg: Config) -> dict[str, list[dict[str, int]]]:
    if cfg.quick:
        return {
            "inputs": [{"n": n, "width": 100, "blocks": 10} for n in (256, 512)],
            "width": [{"n": 256, "width": w, "blocks": 10} for w in (50, 100)],
            "depth": [{"n": 256, "width": 100, "blocks": d} for d in (5, 10)],
        }
    return {
        "inputs": [{"n": n, "width": 200, "blocks": 50} for n in (256, 1024, 4096)],
        "width": [{"n": 1024, "width": w, "blocks": 50} for w in (50, 100, 200, 400)],
        "depth": [{"n": 1024, "width": 200, "blocks": d} for d in (10, 25, 50)],
    }


def run(cfg: Config) -> list[Table]:
    table = Table(
        "scaling",
        "input_gradients against the floor along inputs, width and depth (batch size 256)",
        FLOOR,
        columns=[
            Column("case", "axis"),
            Column("contender", "resnet(blocks, width), inputs"),
            Column("floor_ms", "floor ms", "{:.4g}"),
            Column("median_ms", "probe ms", "{:.4g}"),
            Column("ratio", "probe / floor", "{:.3f}"),
            Column("ratio_iqr", "IQR", "{:.2f}"),
            Column("floor_growth", "floor growth", "{:.2f}"),
            Column("probe_growth", "probe growth", "{:.2f}"),
            Column("target", "target"),
            Column("verdict", "verdict"),
        ],
    )
    for axis, points in _axes(cfg).items():
        first: dict[str, float] = {}
        for p in points:
            case = cases.paper_resnet(cfg, p["n"], blocks=p["blocks"], width=p["width"])
            timings = measure({FLOOR: cases.floor(case, cfg), PROBE: _probe(case)}, cfg)
            floor_t, probe_t = timings.median(FLOOR) or 0.0, timings.median(PROBE) or 0.0
            first = first or {"floor": floor_t, "probe": probe_t}
            row: dict[str, Any] = {
                "case": axis,
                "contender": f"resnet({p['blocks']}, {p['width']}), {p['n']}",
                "floor_ms": 1e3 * floor_t,
                "median_ms": 1e3 * probe_t,
                "ratio": timings.ratio(PROBE, FLOOR),
                "ratio_iqr": timings.ratio_iqr(PROBE, FLOOR),
                "floor_growth": floor_t / first["floor"],
                "probe_growth": probe_t / first["probe"],
                "target": TARGET.describe(),
            }
            row["measured"] = row["ratio"]
            row["verdict"] = TARGET.verdict(row["ratio"])
            table.rows.append(row)
    table.notes.append(
        "growth: median time over the median time at the axis' first value, for the floor and "
        "the probe; the probe's fixed overhead (table 'overhead') weighs most on small sets"
    )
    return [table]
