"""``python -m benchmarks``: run the groups, print their tables, optionally write them as JSON."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
import warnings

# one BLAS/OpenMP thread, set before numpy and torch load them, so ratios do not depend on how
# many cores the other jobs on the machine leave free
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from benchmarks import GROUPS  # noqa: E402
from benchmarks._harness import (  # noqa: E402
    Config,
    Table,
    describe_error,
    environment,
    write_json,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="shatterkit benchmarks: medians and ratios of contenders run side by side.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--json", metavar="PATH", help="also write every table to this file")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these groups (repeat or comma-separate): {', '.join(GROUPS)}",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:k]")
    parser.add_argument("--reps", type=int, help="timed repetitions (default 5, --quick 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1, for stable ratios)",
    )
    args = parser.parse_args(argv)
    names = [n for item in args.only or [] for n in item.split(",") if n]
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose among {list(GROUPS)}")
    args.groups = [g for g in GROUPS if g in names] if names else list(GROUPS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(zarr|captum)(\.|$)")
    cfg = Config(quick=args.quick, device=device, reps=args.reps or (3 if args.quick else 5))
    env = environment(cfg)
    print("shatterkit benchmarks:", ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    tables: list[Table] = []
    start = time.perf_counter()
    for name in args.groups:
        t0 = time.perf_counter()
        try:
            produced = importlib.import_module(GROUPS[name]).run(cfg)
        except Exception as err:  # noqa: BLE001 - one broken group must not hide the others
            traceback.print_exc()
            failed = Table(name, "group failed", "-")
            failed.skip(name, describe_error(err))
            produced = [failed]
        for table in produced:
            print("\n" + table.render(), flush=True)
        print(f"   ({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
        tables.extend(produced)
        if args.json:  # written after every group, so an interrupted run keeps what it measured
            write_json(args.json, cfg, tables, env)
    gaps = [(t.name, r["case"], r["contender"]) for t in tables for r in t.gaps]
    print(f"\ntotal {time.perf_counter() - start:.1f} s; {len(gaps)} gap(s)")
    for table_name, case, contender in gaps:
        print(f"  GAP  {table_name}: {case}: {contender.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
