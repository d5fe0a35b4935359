"""Peak memory against the number of inputs: in memory against ``store=`` zarr streaming.

Each (mode, size) runs in its own subprocess (``python -m benchmarks.memory --worker ...``). After
imports, the model and a warm-up probe, the worker resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``; ``ru_maxrss`` where that is not writable), then makes the inputs and
probes them; it reports the peak RSS above what it held before. In memory the inputs are a
numpy-backed DataArray and the result is kept; streaming, the inputs are a dask-backed DataArray
(generated block by block) and the result goes to a zarr store, opened lazily.

Target (issue 6): streaming memory bounded by a constant number of batches, whatever the inputs:
its peak RSS above rest stays <= 16 batches of input bytes at every size up to 60 batches, while
in memory it grows by about 2 bytes per input byte (inputs and gradients are kept). The bound is
ours. It is a bound, not a ratio of peaks: a streaming run's resting RSS is flat (traced batch by
batch over 120 batches: medians 546-558 MiB by fifths of the run, 400 small batches: 456-457 MiB)
but its peak is the largest of many transient spikes (the batch's tensors, zarr's encode buffers,
the dask threads' next block), which a longer run samples more of: 16-81 MiB from 1 to 60
batches of 8 MiB here. The warm-up probe streams 8 batches first, so the malloc arenas of the
dask and zarr threads exist before the measured run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks._harness import BASELINE, GAP, INFO, PASS, Column, Config, Table

#: streaming's bound: peak RSS above rest <= this many batches of input bytes, whatever the size
BOUND = 16
#: features per sample (float32): 64 KiB per input, 64 KiB per gradient
FEATURES = 16_384
BATCH = 128
IN_MEMORY, STREAMING = "in memory", "store= zarr, dask-backed inputs"
MODES = {IN_MEMORY: "memory", STREAMING: "stream"}


# -- worker (a subprocess per measurement) ----------------------------------------------------------


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _worker(mode: str, n: int, batch: int, device: str) -> dict[str, Any]:
    import gc
    import resource
    import warnings

    import dask.array as da
    import numpy as np
    import torch
    import xarray as xr

    from shatterkit import input_gradients, models

    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    model = models.feedforward(2, width=64, in_features=FEATURES, seed=0).to(device)

    def inputs(size: int) -> xr.DataArray:
        shape = (size, FEATURES)
        if mode == "stream":
            data: Any = da.random.default_rng(0).standard_normal(
                shape, chunks=(batch, FEATURES), dtype=np.float32
            )
        else:
            data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        return xr.DataArray(data, dims=("sample", "feature"))

    with tempfile.TemporaryDirectory() as tmp:

        def probe(size: int, name: str) -> Any:
            store = os.path.join(tmp, name) if mode == "stream" else None
            return input_gradients(model, inputs(size), batch_size=batch, store=store)

        # lazy imports, zarr codecs, and enough batches for the dask and zarr threads to have
        # made their malloc arenas (a 40-batch run's RSS plateaus after about 5 batches)
        probe(8 * batch, "warmup.zarr")
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        exact = _reset_peak()
        before = (
            _status("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        result = probe(n, "run.zarr")
        peak = (
            _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        assert result["gradient"].shape == (n, FEATURES)
        out = {"mode": mode, "n": n, "peak_bytes": peak - before, "exact": exact}
        if device.startswith("cuda"):
            out["device_peak_bytes"] = torch.cuda.max_memory_allocated()
        del result
    return out


# -- the group --------------------------------------------------------------------------------------


def _measure(mode: str, n: int, cfg: Config) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--worker",
        mode,
        str(n),
        str(BATCH),
        str(cfg.device),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"mode": mode, "n": n, "error": tail[:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(cfg: Config) -> list[Table]:
    multiples = cfg.pick([2, 8], [1, 2, 10, 20, 60])
    # --quick: streaming only (each worker pays the imports of torch, xarray, dask and zarr)
    modes = cfg.pick([STREAMING], list(MODES))
    jobs = [(label, m) for m in multiples for label in modes]
    # two workers at a time: peak memory does not depend on how fast they run
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _measure(MODES[job[0]], job[1] * BATCH, cfg), jobs))
    table = Table(
        "memory",
        f"peak RSS above the worker's resting RSS; batch {BATCH} x {FEATURES} float32 features "
        f"({BATCH * FEATURES * 4 / 2**20:.0f} MiB of inputs per batch)",
        f"the same mode at {multiples[0]} batch(es) (growth) / one batch of inputs (size)",
        columns=[
            Column("case", "case"),
            Column("contender", "mode"),
            Column("n", "inputs", "{:,}"),
            Column("batches", "batches"),
            Column("peak_mib", "peak MiB", "{:.1f}"),
            Column("per_batch", "peak / batch bytes", "{:.2f}"),
            Column("ratio", "growth", "{:.2f}"),
            Column("target", "target"),
            Column("verdict", "verdict"),
            Column("note", "note"),
        ],
    )
    batch_bytes = BATCH * FEATURES * 4
    by_mode: dict[str, list[dict[str, Any]]] = {label: [] for label in modes}
    for (label, m), res in zip(jobs, results, strict=True):
        by_mode[label].append({**res, "multiple": m})
    for label, rows in by_mode.items():
        first = next((r for r in rows if "error" not in r), None)
        for r in rows:
            row: dict[str, Any] = {
                "case": "feedforward(2, 64), 16384 inputs",
                "contender": label,
                "n": r["n"],
                "batches": r["multiple"],
            }
            if "error" in r:
                table.rows.append({**row, "verdict": "skip", "note": r["error"]})
                continue
            peak = r["peak_bytes"]
            row.update(
                peak_mib=peak / 2**20,
                per_batch=peak / batch_bytes,
                ratio=peak / first["peak_bytes"] if first and first["peak_bytes"] > 0 else None,
                verdict=BASELINE if r is first else INFO,
                note="" if r["exact"] else "ru_maxrss (peak of the whole process)",
            )
            if "device_peak_bytes" in r:
                row["note"] += f" device peak {r['device_peak_bytes'] / 2**20:.0f} MiB"
            table.rows.append(row)
    for label in modes:
        done = [r for r in table.rows if r["contender"] == label and "peak_mib" in r]
        if len(done) < 2:
            continue
        a, b = done[0], done[-1]
        kept = (b["peak_mib"] - a["peak_mib"]) * 2**20 / ((b["n"] - a["n"]) * FEATURES * 4)
        worst = max(r["per_batch"] for r in done)
        stream = label == STREAMING
        judged = stream and not cfg.quick
        table.rows.append(
            {
                "case": "derived",
                "contender": label,
                "n": b["n"],
                "batches": f"{a['batches']}->{b['batches']}",
                "per_batch": worst,
                "ratio": kept,
                "target": f"<= {BOUND} batches at every size" if judged else "",
                "verdict": (PASS if worst <= BOUND else GAP) if judged else INFO,
                "note": "peak / batch bytes: the largest over the sizes; growth: peak growth per "
                "byte of inputs added"
                + ("" if stream else " (in memory the inputs and gradients are kept: about 2)"),
            }
        )
    if cfg.quick:
        table.notes.append("--quick measures the streaming mode only")
    table.notes.append(
        "in memory holds the inputs and the gradients (2 x 64 KiB per sample) by design; growth "
        "is against the same mode at the smallest size"
    )
    return [table]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODE", "N", "BATCH", "DEVICE"), required=True
    )
    mode, n, batch, device = parser.parse_args(argv).worker
    print(json.dumps(_worker(mode, int(n), int(batch), device)))


if __name__ == "__main__":
    main()
