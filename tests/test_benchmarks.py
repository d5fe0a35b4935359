"""Smoke test of the benchmark suite: it runs and writes ratio tables (no timing assertion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_ratio_tables_with_verdicts(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--only", "scaling", "--reps", "2"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    (table,) = json.loads(out.read_text())["tables"]
    assert table["name"] == "scaling"
    assert table["columns"]["ratio"] == "probe / floor"  # the verdict is a ratio, not a time
    assert table["rows"]
    for row in table["rows"]:
        assert row["ratio"] > 0
        assert row["verdict"] in {"PASS", "GAP"}
        assert row["target"].startswith("<= 1.1x floor")
    assert "probe / floor" in proc.stdout
