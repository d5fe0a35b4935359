"""shatterkit's benchmark suite: side-by-side ratios against stated baselines (issue 6).

Run ``python -m benchmarks [--quick] [--json out.json] [--only NAME] [--device cuda]`` from the
repository root. Each group is a module with ``run(cfg) -> list[Table]``; each table compares
contenders measured in the same process, interleaved, and gives a verdict per row against the
target it states (PASS, GAP, or info where no target applies).
"""

#: group name -> module, in the order they run
GROUPS = {
    "gradients": "benchmarks.gradients",
    "layers": "benchmarks.layers",
    "activations": "benchmarks.activations",
    "metrics": "benchmarks.metrics",
    "memory": "benchmarks.memory",
    "autocast": "benchmarks.autocast",
    "scaling": "benchmarks.scaling",
}
