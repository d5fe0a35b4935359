"""The ``shatterkit`` command: ``shatterkit reproduce`` and ``shatterkit probe``.

A thin argparse layer over :func:`shatterkit.reproduce.run` and the probes and metrics. Usage
errors (a bad model spec, a missing input shape) print a message and exit with status 2, other
errors of the library (a model that does not fit the inputs, ...) exit with status 1; neither
prints a traceback unless ``--traceback`` is given.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import importlib.util
import inspect
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

PROG = "shatterkit"
INPUT_SETS = ("line", "segment", "ray", "image-segment", "image-ray")


class UsageError(Exception):
    """A command line that cannot run as given (status 2, like argparse's own errors)."""


# -- shatterkit reproduce -------------------------------------------------------------------------


def _reproduce(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from shatterkit.reproduce import run

    if args.seeds is not None and args.seeds < 2:
        raise UsageError(f"--seeds must be an int >= 2. Got {args.seeds} instead.")
    report = run(
        args.out,
        quick=args.quick,
        seeds=args.seeds,
        device=args.device,
        progress=False if args.no_progress else None,
    )
    total = sum(report.timings.values())
    print(f"Wrote {len(report.files)} files to {report.out} in {total:.0f} s:")
    for name in report.files:
        print(f"  {name}")
    disagree = report.disagreements
    print(
        f"\n{len(report.table) - len(disagree)} of {len(report.table)} comparisons with the paper "
        f"agree or are references; {len(disagree)} disagree (see {report.files['report.md']}):"
    )
    for row in disagree.itertuples(index=False):
        print(f"  - {row.item}: {row.quantity} {row.shown} (paper: {row.paper})")
    return 0


# -- shatterkit probe -----------------------------------------------------------------------------


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(
                f"--arg must be KEY=VALUE with KEY a Python name. Got {pair!r} instead."
            )
        kwargs[key] = _literal(value)
    return kwargs


def _import_model(spec: str, kwargs: dict[str, Any], seed: int) -> Any:
    """Call ``module:function`` (with ``kwargs``, and ``seed`` if it takes one); return the model."""
    from torch import nn

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(
            f"MODEL must be 'module:function' (e.g. 'shatterkit.models:feedforward'). "
            f"Got {spec!r} instead."
        )
    # like uvicorn and gunicorn: modules of the working directory are importable
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"cannot import module {module_name!r} of MODEL {spec!r}: {err}") from err
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
            raise UsageError(f"{module_name!r} has no attribute {attr!r}{hint}.")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        if kwargs:
            raise UsageError(f"{spec!r} is a module instance; --arg applies to callables only.")
        return target
    if not callable(target):
        raise UsageError(
            f"MODEL {spec!r} must name a callable returning a torch.nn.Module. "
            f"Got an object of type {type(target).__name__} instead."
        )
    try:
        if "seed" not in kwargs and "seed" in inspect.signature(target).parameters:
            kwargs = {**kwargs, "seed": seed}
    except (TypeError, ValueError):  # no signature (a builtin): call as given
        pass
    try:
        model = target(**kwargs)
    except TypeError as err:
        raise UsageError(
            f"calling {spec!r} failed: {err}; pass its arguments with --arg KEY=VALUE."
        ) from err
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"MODEL {spec!r} must return a torch.nn.Module. "
            f"Got an object of type {type(model).__name__} instead."
        )
    return model


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, bool]:
    """The model, the torchvision transform (or None) and whether it came from torchvision."""
    kwargs = _model_kwargs(args.arg)
    if ":" in args.model:
        return _import_model(args.model, kwargs, args.seed), None, False
    if importlib.util.find_spec("torchvision") is None:
        raise UsageError(
            f"MODEL must be 'module:function' (e.g. 'shatterkit.models:feedforward') or a "
            f"torchvision model name, which needs torchvision (pip install 'shatterkit[vision]'). "
            f"Got {args.model!r} instead."
        )
    from shatterkit import vision

    try:
        model, transform = vision.load(args.model, seed=args.seed, **kwargs)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return model, transform, True


def _input_shape(args: argparse.Namespace, model: Any) -> tuple[int, ...]:
    from torch import nn

    if args.input_shape:
        try:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise UsageError(
                "--input-shape must be positive ints separated by commas (e.g. 1 or 3,32,32). "
                f"Got {args.input_shape!r} instead."
            )
        return shape
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            break
    raise UsageError(
        f"cannot tell the input shape of {type(model).__name__} (its first layer is not "
        "nn.Linear); pass --input-shape, e.g. --input-shape 3,32,32."
    )


def _inputs(args: argparse.Namespace, model: Any, transform: Any, images: bool) -> Any:
    import numpy as np

    from shatterkit import inputs

    kind = args.inputs or ("image-segment" if images else "line")
    if kind.startswith("image-"):
        from shatterkit import vision

        n = args.n or 32
        size = f"{args.size} x {args.size}"
        if kind == "image-segment":
            return (
                vision.image_segment(n, args.size, transform),
                f"image-segment: from china.jpg to flower.jpg (scikit-learn's photos), {size}",
            )
        return (
            vision.image_ray(n, args.size, transform, seed=args.seed),
            f"image-ray: a line through china.jpg along a random direction, {size}",
        )
    n = args.n or 256
    shape = _input_shape(args, model)
    rng = np.random.default_rng(args.seed)
    if kind == "line":
        if shape == (1,):
            return inputs.line(-2.0, 2.0, n), "line: the paper's grid on [-2, 2]"
        return (
            inputs.ray(np.zeros(shape), radius=2.0, n=n, seed=rng),
            "line: through 0 along a random direction, t in [-2, 2]",
        )
    if kind == "segment":
        a, b = rng.standard_normal(shape), rng.standard_normal(shape)
        return inputs.segment(a, b, n=n), "segment: between two random Gaussian inputs"
    return (
        inputs.ray(rng.standard_normal(shape), radius=1.0, n=n, seed=rng),
        "ray: a line of half-length 1 through a random Gaussian input",
    )


def _rectifier_modules(model: Any, call_names: Sequence[str]) -> list[str]:
    """Module names among the rectifier calls (not functional calls, not repeat calls)."""
    modules = dict(model.named_modules())
    names = [str(c).split("#")[0] for c in call_names]
    return list(dict.fromkeys(n for n in names if n in modules and n))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _probe_table(grads: Any, pat: Any) -> Any:
    import pandas as pd

    from shatterkit import metrics
    from shatterkit._dims import DEPTH, LAG, LAYER

    profile = metrics.shattering_profile(grads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant gradients: NaN, shown as —
            spectrum = metrics.spectral_exponent(grads)["spectral_exponent"]
    except ValueError:  # too few samples for a spectrum
        spectrum = None
    rows: dict[str, dict[str, Any]] = {}
    calls: list[str] = []
    for name in (str(v) for v in profile[LAYER].values):
        rows[name] = {
            "layer": name,
            "depth": int(profile[DEPTH].sel({LAYER: name})),
            "shattering index": float(profile["shattering_index"].sel({LAYER: name})),
            "spectral exponent": math.nan
            if spectrum is None
            else float(spectrum.sel({LAYER: name}) if LAYER in spectrum.dims else spectrum),
        }
    if pat is not None:
        rate = metrics.activation_rate(pat)["rate"]
        co = metrics.coactivation_rate(pat)
        flips = metrics.pattern_dispersion(pat, max_lag=1).sel({LAG: 1})
        calls = [str(v) for v in co[LAYER].values]
        for name in calls:
            row = rows.setdefault(name, {"layer": name, "depth": None})
            row.update(
                {
                    "fraction on": float(rate.sel({LAYER: name})),
                    "co-activation": float(co.sel({LAYER: name})),
                    "flips per step": float(flips.sel({LAYER: name})),
                }
            )
    # the input first, then the rectifier calls in call order
    order = ["input", *calls]
    ranked = sorted(
        rows.values(), key=lambda r: order.index(r["layer"]) if r["layer"] in order else len(order)
    )
    return pd.DataFrame(ranked)


def _format_table(table: Any) -> str:
    """Columns aligned: the layer name to the left, numbers to the right, NaN as a dash."""
    cells = [[str(c) for c in table.columns]]
    for row in table.itertuples(index=False):
        cells.append(
            [
                str(v)
                if k == "layer"
                else "—"
                if v is None or v != v
                else str(int(v))
                if k == "depth"
                else _fmt(v)
                for k, v in zip(table.columns, row, strict=True)
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    )


def _probe(args: argparse.Namespace) -> int:
    from shatterkit import activation_patterns, input_gradients

    model, transform, images = _load_model(args)
    X, description = _inputs(args, model, transform, images)
    common = {"batchnorm": args.batchnorm, "device": args.device, "progress": False}
    try:
        pat = activation_patterns(model, X, **common)
    except ValueError as err:
        if "rectifier" not in str(err):
            raise
        pat = None  # a model without rectifiers: gradients only
    layers = [] if pat is None else _rectifier_modules(model, [str(v) for v in pat["layer"].values])
    try:
        grads = input_gradients(model, X, output=args.output, layers=layers or None, **common)
    except ValueError as err:
        if "output=<int>" not in str(err):
            raise
        raise UsageError(f"{err} On the command line: --output K.") from err
    table = _probe_table(grads, pat)
    n_params = sum(p.numel() for p in model.parameters())
    n = X.sizes["sample"]
    print(f"model: {args.model} ({type(model).__name__}, {n_params:,} parameters)")
    print(f"inputs: {description}; {n} points")
    print(f"output: {grads.attrs['output']}; batch statistics: {args.batchnorm}")
    first = table.iloc[0]
    print(
        f"input gradient: shattering index {first['shattering index']:.3f} (brown noise about "
        f"{3 / n:.3f}, white noise 1), spectral exponent {_fmt(first['spectral exponent'], 2)} "
        "(brown 2, white 0)\n"
    )
    print(_format_table(table))
    return 0


# -- the parser -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Measure the shattered gradients problem (Balduzzi et al., ICML 2017).",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rep = sub.add_parser(
        "reproduce",
        help="rerun the paper's experiments: figures, netCDF data and report.md",
        description="Rerun the paper's experiments and write PNG figures, netCDF data and "
        "report.md (measured numbers beside the paper's predictions) into --out.",
    )
    rep.add_argument("--out", default="results", help="output directory (default: results)")
    rep.add_argument(
        "--quick", action="store_true", help="fewer seeds and depths: under a minute on 2 CPUs"
    )
    rep.add_argument("--seeds", type=int, metavar="N", help="ensemble size (default 20, quick 3)")
    rep.add_argument("--device", metavar="D", help="torch device for the probes, e.g. cuda")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.set_defaults(func=_reproduce, subparser=rep)

    probe = sub.add_parser(
        "probe",
        help="probe a model along a path of inputs and print its shattering metrics",
        description="Probe MODEL along a built-in path of inputs and print, per layer, the "
        "shattering index and spectral exponent of the gradient and the co-activation rate.",
    )
    probe.add_argument(
        "model",
        metavar="MODEL",
        help="'module:function' (a callable returning a torch.nn.Module, e.g. "
        "'shatterkit.models:feedforward') or a torchvision model name (vision extra)",
    )
    probe.add_argument(
        "-a",
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for MODEL's callable, a Python literal (repeatable)",
    )
    probe.add_argument(
        "--inputs",
        choices=INPUT_SETS,
        help="input set: the 1-D grid (a line through 0 for vector inputs), a segment or ray "
        "through random inputs, or a path through scikit-learn's sample photos "
        "(default: line; image-segment for torchvision models)",
    )
    probe.add_argument("--n", type=int, help="points on the path (default 256; 32 for images)")
    probe.add_argument(
        "--output", type=int, metavar="K", help="unit K of the output (needed for several outputs)"
    )
    probe.add_argument("--input-shape", metavar="SHAPE", help="shape of one input, e.g. 3,32,32")
    probe.add_argument("--size", type=int, default=64, help="image side for image inputs")
    probe.add_argument(
        "--batchnorm",
        choices=("population", "coupled", "eval"),
        default="population",
        help="batch statistics while probing (default: population, over the whole path)",
    )
    probe.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random inputs, and of the model when its callable takes 'seed'",
    )
    probe.add_argument("--device", metavar="D", help="torch device, e.g. cuda")
    probe.set_defaults(func=_probe, subparser=probe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shatterkit`` command line; return the exit status.

    ``shatterkit reproduce [--out DIR] [--quick] [--seeds N] [--device D]`` reruns the paper's
    experiments (:func:`shatterkit.reproduce.run`); ``shatterkit probe MODEL`` probes a model
    given as ``module:function`` or a torchvision name along a built-in path of inputs and
    prints its shattering metrics per layer.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 for usage errors (bad arguments, a MODEL that cannot be loaded), 1 for
        other errors; the message goes to stderr.

    See Also
    --------
    shatterkit.reproduce.run : What ``shatterkit reproduce`` runs.

    Examples
    --------
    >>> from shatterkit.cli import main
    >>> main(["probe", "shatterkit.models:feedforward", "-a", "depth=2", "-a", "width=8",
    ...       "-a", "batchnorm=True", "--n", "32"])  # doctest: +NORMALIZE_WHITESPACE
    model: shatterkit.models:feedforward (Sequential, 112 parameters)
    inputs: line: the paper's grid on [-2, 2]; 32 points
    output: model output; batch statistics: population
    input gradient: shattering index 0.111 (brown noise about 0.094, white noise 1), spectral
    exponent 3.32 (brown 2, white 0)
    <BLANKLINE>
    layer          depth  shattering index  spectral exponent  fraction on  co-activation  flips per step
    input              0             0.111              3.316            —              —               —
    layers.0.relu      1             0.123              1.451        0.500          0.242           0.032
    layers.1.relu      2             0.000                  —        0.434          0.187           0.040
    0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2); argparse printed the message
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except UsageError as err:
        if args.traceback:
            raise
        args.subparser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, KeyError, ImportError, OSError, RuntimeError) as err:
        if args.traceback:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(
            f"{PROG} {args.command}: error: {message} (run with --traceback for details)",
            file=sys.stderr,
        )
        return 1
