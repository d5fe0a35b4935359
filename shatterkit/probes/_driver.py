"""Run a probe's per-batch function over models and batches: in memory, to zarr, or lazily on dask.

A probe supplies ``make_chunk_fn(session)``, called once per model once the model is ready
(hooks go in there), returning ``chunk_fn(x, first) -> (variables, coords)`` for one batch; this
module owns everything around it, once for both probes:

* in memory: concatenate the batches and stack the ensemble;
* ``store=``: write each batch into a zarr store as soon as it is computed, mark it done, and
  return the lazily opened store (memory bounded by one batch; ``resume=True`` skips done batches);
* dask-backed inputs: one delayed task per input block, each probing its block with its own copy
  of the model (on a ``distributed`` worker when a client is active).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from shatterkit._dims import GRADIENT, MODEL, SAMPLE, safe_attrs
from shatterkit.probes._engine import (
    Inputs,
    Session,
    StatisticsNeeded,
    _Stat,
    check_model_tensors,
    chunks,
    compute_dtype,
    count_nonfinite,
    finish_host,
    population_statistics,
    preserved_state,
    probe_session,
    progress_bar,
    resolve_device,
    shared_tensor,
    unwrap_model,
    versions,
)

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]
ChunkFn = Callable[[torch.Tensor, bool], tuple[Variables, dict[str, Any]]]
MakeChunkFn = Callable[[Session], ChunkFn]

#: per batch of a zarr store: the count of non-finite gradient values once the batch is written,
#: -1 before, so an interrupted probe can resume where it stopped
DONE = "batch_nonfinite"


def run_probe(
    members: list[torch.nn.Module],
    inputs: Inputs,
    make_chunk_fn: MakeChunkFn,
    *,
    ensemble: bool,
    session_kw: dict[str, Any],
    attrs: dict[str, Any],
    progress: bool | None,
    store: Any = None,
    resume: bool = False,
) -> xr.Dataset:
    """Probe every model of ``members`` on ``inputs`` and return the labeled Dataset."""
    attrs = {**attrs, **versions()}
    for model in members:
        check_model_tensors(
            unwrap_model(model), session_kw["caller"], session_kw.get("gradients", True)
        )
    if inputs.lazy and session_kw["batchnorm"] == "coupled":
        raise ValueError(
            f"batchnorm='coupled' in {session_kw['caller']} differentiates through the statistics "
            "of the whole set as one batch, which needs the inputs in memory; load them "
            "(X.load()) or use batchnorm='population'."
        )
    if store is not None:
        return _to_zarr(
            members, inputs, make_chunk_fn, ensemble, session_kw, attrs, progress, store, resume
        )
    if inputs.lazy:
        return _lazy(members, inputs, make_chunk_fn, ensemble, session_kw, attrs)
    per_model: list[Variables] = []
    coords: dict[str, Any] = {}
    for model in members:
        with probe_session(model, inputs, **session_kw) as s:
            chunk_fn = _ready(make_chunk_fn, s)
            slices = chunks(inputs.n, s.batch_size)
            bar = progress_bar(len(slices) * len(members), progress, session_kw["caller"])
            if s.device.type == "cpu":
                variables, coords = _collect(chunk_fn, s, inputs, slices, bar)
            else:  # the copies to the host run asynchronously: one wait at the end
                parts = []
                for i, sl in enumerate(slices):
                    part, coords = chunk_fn(inputs.get(sl), i == 0)
                    parts.append(part)
                    bar.update()
                variables = {
                    k: (d, _join(finish_host([p[k][1] for p in parts], s.device)), a)
                    for k, (d, _, a) in parts[0].items()
                }
            bar.close()
            attrs.update(device=str(s.device), dtype=str(s.dtype).replace("torch.", ""))
        per_model.append(variables)
    ds = assemble(per_model, inputs, ensemble, coords, attrs)
    if any(_is_gradient(v) for v in ds.data_vars):
        ds.attrs["n_nonfinite"] = count_nonfinite(ds, session_kw["caller"])
    return ds


def _ready(make_chunk_fn: MakeChunkFn, s: Session) -> ChunkFn:
    """The probe's chunk function for session ``s``. A batch that meets a batch-norm call while
    the population statistics are pending gathers them and runs again: models without batch
    norm never pay for the gathering (nor for a forward that looks for such calls)."""
    chunk_fn = make_chunk_fn(s)

    def run(x: torch.Tensor, first: bool) -> tuple[Variables, dict[str, Any]]:
        try:
            return chunk_fn(x, first)
        except StatisticsNeeded:
            pass
        s.gather_statistics()  # outside the except block: a later error is not chained to it
        return chunk_fn(x, first)

    return run


def _collect(
    chunk_fn: ChunkFn, s: Session, inputs: Inputs, slices: list[slice], bar: Any
) -> tuple[Variables, dict[str, Any]]:
    """Run every batch on the CPU into arrays of the whole set, allocated after the first batch.

    Each later batch is offered its rows of those arrays in ``s.out``; a chunk function that
    writes its result there (and returns that very array) is not copied.
    """
    whole: Variables = {}
    coords: dict[str, Any] = {}
    try:
        for i, sl in enumerate(slices):
            s.out = {k: a[sl] for k, (_, a, _) in whole.items()}
            variables, coords = chunk_fn(inputs.get(sl), i == 0)
            bar.update()
            if len(slices) == 1:  # nothing to join: keep the batch's own arrays
                arrays = _unshared({k: a for k, (_, a, _) in variables.items()})
                return {k: (d, arrays[k], at) for k, (d, _, at) in variables.items()}, coords
            if not whole:
                whole = {
                    k: (d, np.empty((inputs.n, *a.shape[1:]), dtype=a.dtype), at)
                    for k, (d, a, at) in variables.items()
                }
                s.out = {k: a[sl] for k, (_, a, _) in whole.items()}
            for k, (_, a, _) in variables.items():
                dest = s.out.get(k)
                if dest is None or a.shape != dest.shape:
                    raise RuntimeError(
                        f"batch {i} gave {k!r} of shape {a.shape}, where the first batch's layout "
                        f"needs {None if dest is None else dest.shape}; the model's outputs must "
                        "have the same layout for every input (is its forward data-dependent?)"
                    )
                if a is not dest:
                    dest[...] = a
    finally:
        s.out = {}
    return whole, coords


def _unshared(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` sharing no memory with one another, copying only where they do: autograd may
    hand back one tensor for two targets (the input and the output of an ``Identity``,
    ``Flatten`` or dropout), and a single batch's arrays are returned without a copy."""
    out = {k: _join([a]) for k, a in arrays.items()}
    spans = sorted(
        (a.__array_interface__["data"][0], a.nbytes, k) for k, a in out.items() if a.nbytes
    )
    end = -1
    for start, size, k in spans:  # by address: each array that overlaps an earlier one is copied
        if start < end:
            out[k] = out[k].copy()
        else:
            end = start + size
    return out


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    """The batches as one array; a single contiguous batch is not copied (a broadcast gradient,
    e.g. of ``x.sum()``, is: its zero strides would alias every sample)."""
    return np.ascontiguousarray(arrays[0]) if len(arrays) == 1 else np.concatenate(arrays)


def _is_gradient(name: Any) -> bool:
    return str(name).startswith(GRADIENT)


def _nonfinite(variables: Variables) -> int:
    return sum(
        int((~np.isfinite(a)).sum()) for k, (_, a, _) in variables.items() if _is_gradient(k)
    )


def assemble(
    per_model: list[Variables],
    inputs: Inputs,
    ensemble: bool,
    coords: dict[str, Any],
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Stack per-model variables into a Dataset (a leading ``model`` dim only for ensembles)."""
    first = {k: (d, a.shape) for k, (d, a, _) in per_model[0].items()}
    for i, pm in enumerate(per_model[1:], start=1):
        other = {k: (d, a.shape) for k, (d, a, _) in pm.items()}
        if other != first:
            raise ValueError(
                "The models of an ensemble must give results of the same layout; model 0 gives "
                f"{_layout(first)}, model {i} gives {_layout(other)}."
            )
    data_vars = {}
    for name, (dims, _, var_attrs) in per_model[0].items():
        arrays = [pm[name][1] for pm in per_model]
        if ensemble:
            data_vars[name] = ((MODEL, *dims), _stack(arrays), var_attrs)
        else:
            data_vars[name] = (dims, arrays[0], var_attrs)
    all_coords = {SAMPLE: np.arange(inputs.n), **inputs.coords, **coords}
    ds = xr.Dataset(data_vars, coords=all_coords)
    if ensemble:
        ds = ds.assign_coords({MODEL: np.arange(len(per_model))})
    ds.attrs = safe_attrs(attrs)
    return ds


def _layout(layout: dict[str, Any]) -> str:
    return ", ".join(f"{k}{tuple(shape)}" for k, (_, shape) in layout.items())


def _stack(arrays: list[Any]) -> Any:
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.stack(arrays)
    import dask.array as da

    return da.stack(arrays)


# -- zarr streaming -------------------------------------------------------------------------------


def _to_zarr(
    members: list[torch.nn.Module],
    inputs: Inputs,
    make_chunk_fn: MakeChunkFn,
    ensemble: bool,
    session_kw: dict[str, Any],
    attrs: dict[str, Any],
    progress: bool | None,
    store: Any,
    resume: bool,
) -> xr.Dataset:
    done = _done_flags(store, inputs, ensemble, len(members), attrs) if resume else None
    if done is not None:
        _check_batches(store, done, inputs.n, session_kw)
    for k, model in enumerate(members):
        if done is not None and (done[k] if ensemble else done).min() >= 0:
            continue  # a member the interrupted run finished: not even its statistics are needed
        with probe_session(model, inputs, **session_kw) as s:
            chunk_fn = _ready(make_chunk_fn, s)
            slices = chunks(inputs.n, s.batch_size)
            if done is not None:
                _check_batches(store, done, inputs.n, {**session_kw, "batch_size": s.batch_size})
            bar = progress_bar(len(slices), progress, session_kw["caller"])
            for i, sl in enumerate(slices):
                if done is not None and (done[k, i] if ensemble else done[i]) >= 0:
                    bar.update()
                    continue
                variables, coords = chunk_fn(inputs.get(sl), i == 0 or done is None)
                if done is None:
                    attrs.update(device=str(s.device), dtype=str(s.dtype).replace("torch.", ""))
                    _initialise(
                        store, variables, coords, inputs, ensemble, len(members), slices, attrs
                    )
                    done = np.full((len(members), len(slices)) if ensemble else len(slices), -1)
                variables = _on_host(variables, s.device)
                _write(store, variables, sl, k if ensemble else None)
                count = _nonfinite(variables)
                _mark_done(store, i, k if ensemble else None, count)
                done[(k, i) if ensemble else i] = count
                bar.update()
            bar.close()
    ds = xr.open_zarr(store)
    per_batch = ds[DONE].values.reshape(-1, ds.sizes["batch"])
    ds = ds.drop_vars(DONE)
    if any(_is_gradient(v) for v in ds.data_vars):
        ds.attrs["n_nonfinite"] = total = int(per_batch.sum())
        if total:
            # the store holds counts per batch (its sample chunks), so name the batches' samples
            bounds = np.cumsum((0, *ds[GRADIENT].variable.chunksizes[SAMPLE]))
            bad = np.flatnonzero((per_batch > 0).any(0))
            where = ", ".join(f"{bounds[b]}-{bounds[b + 1] - 1}" for b in bad[:5])
            warnings.warn(
                f"{session_kw['caller']}: {total} non-finite gradient value(s) in the store "
                f"{store!r}, in the batches of samples {where}. Recorded in "
                "attrs['n_nonfinite']; the metrics refuse them unless skipna=True.",
                RuntimeWarning,
                stacklevel=4,
            )
    return ds


def _on_host(variables: Variables, device: torch.device) -> Variables:
    names = list(variables)
    arrays = finish_host([variables[k][1] for k in names], device)
    return {k: (variables[k][0], a, variables[k][2]) for k, a in zip(names, arrays, strict=True)}


def _mark_done(store: Any, batch: int, model: int | None, count: int) -> None:
    region = {"batch": slice(batch, batch + 1)}
    if model is None:
        flag = xr.Dataset({DONE: (("batch",), np.array([count]))})
    else:
        flag = xr.Dataset({DONE: ((MODEL, "batch"), np.array([[count]]))})
        region[MODEL] = slice(model, model + 1)
    flag.to_zarr(store, region=region)


def _check_batches(store: Any, done: np.ndarray, n: int, session_kw: dict[str, Any]) -> None:
    """Refuse to resume with other batches than the interrupted run's (known unless 'auto')."""
    batch_size = n if session_kw["batchnorm"] == "coupled" else session_kw["batch_size"]
    if batch_size == "auto" or done.shape[-1] == len(chunks(n, batch_size)):
        return
    raise ValueError(
        f"resume=True needs the batch_size of the interrupted run: the store at {store!r} has "
        f"{done.shape[-1]} batches, batch_size={batch_size} gives {len(chunks(n, batch_size))}."
    )


def _done_flags(
    store: Any, inputs: Inputs, ensemble: bool, n_models: int, attrs: dict[str, Any]
) -> np.ndarray | None:
    """The batch flags of an interrupted run's store (``None`` if it never got written), after
    checking that this run is the same probe on the same inputs and ensemble."""
    try:
        existing = xr.open_zarr(store)
    except (FileNotFoundError, KeyError, ValueError):
        return None
    if DONE not in existing:
        raise ValueError(f"the zarr store at {store!r} was not written by a shatterkit probe.")

    def layout(ds_attrs: dict[str, Any], n: Any, models: Any) -> str:
        shown = f"{ds_attrs.get('history')} on {n} samples"
        return shown + (f" and {models} models" if models else "")

    # the versions may differ: resuming after an upgrade is allowed
    keys = [k for k in attrs if k not in ("torch_version", "shatterkit_version")]
    ours = safe_attrs({k: attrs[k] for k in keys})
    theirs = {k: existing.attrs.get(k) for k in keys}
    n_theirs, models_theirs = existing.sizes.get(SAMPLE), existing.sizes.get(MODEL)
    if (
        any(not np.array_equal(ours[k], theirs[k]) for k in keys)
        or n_theirs != inputs.n
        or models_theirs != (n_models if ensemble else None)
    ):
        raise ValueError(
            "resume=True needs the probe, parameters, inputs and ensemble of the interrupted "
            f"run: the store at {store!r} holds {layout(existing.attrs, n_theirs, models_theirs)}; "
            f"this run is {layout(ours, inputs.n, n_models if ensemble else None)}. Pass "
            "resume=False to overwrite it."
        )
    return existing[DONE].values


def _initialise(
    store: Any,
    variables: Variables,
    coords: dict[str, Any],
    inputs: Inputs,
    ensemble: bool,
    n_models: int,
    slices: list[slice],
    attrs: dict[str, Any],
) -> None:
    import dask.array as da

    batch = slices[0].stop - slices[0].start
    data_vars: dict[str, Any] = {}
    for name, (dims, array, var_attrs) in variables.items():
        shape = (inputs.n, *array.shape[1:])
        chunk_shape = (batch, *array.shape[1:])
        if ensemble:
            dims, shape, chunk_shape = (MODEL, *dims), (n_models, *shape), (1, *chunk_shape)
        data_vars[name] = (dims, da.zeros(shape, dtype=array.dtype, chunks=chunk_shape), var_attrs)
    done_dims = (MODEL, "batch") if ensemble else ("batch",)
    done_shape = (n_models, len(slices)) if ensemble else (len(slices),)
    data_vars[DONE] = (done_dims, np.full(done_shape, -1, dtype=np.int64))
    ds = xr.Dataset(data_vars, coords={SAMPLE: np.arange(inputs.n), **inputs.coords, **coords})
    if ensemble:
        ds = ds.assign_coords({MODEL: np.arange(n_models)})
    ds.attrs = safe_attrs(attrs)
    ds[DONE].encoding["chunks"] = (1, 1) if ensemble else (1,)
    for coord_name, coord in ds.coords.items():
        if SAMPLE in coord.dims and coord_name != SAMPLE:
            # chunked like the data, so the opened store has one chunking along `sample`
            coord.encoding["chunks"] = tuple(
                batch if d == SAMPLE else n for d, n in coord.sizes.items()
            )
    ds.to_zarr(store, mode="w", compute=False)
    # the flags are real data: write them now so a store interrupted later reopens cleanly
    ds[[DONE]].to_zarr(store, mode="r+")


def _write(store: Any, variables: Variables, sl: slice, model: int | None) -> None:
    data_vars = {}
    for name, (dims, array, _) in variables.items():
        if model is not None:
            dims, array = (MODEL, *dims), array[None]
        data_vars[name] = (dims, array)
    region: dict[str, slice] = {SAMPLE: sl}
    if model is not None:
        region[MODEL] = slice(model, model + 1)
    xr.Dataset(data_vars).to_zarr(store, region=region)


# -- dask ---------------------------------------------------------------------------------------


def _lazy(
    members: list[torch.nn.Module],
    inputs: Inputs,
    make_chunk_fn: MakeChunkFn,
    ensemble: bool,
    session_kw: dict[str, Any],
    attrs: dict[str, Any],
) -> xr.Dataset:
    import dask
    import dask.array as da

    block_sizes = inputs.data.chunks[0]
    bounds = np.cumsum((0, *block_sizes))
    per_model: list[Variables] = []
    coords: dict[str, Any] = {}
    for model in members:
        stats = _stats_for(model, inputs, session_kw)
        # one sample eagerly, to learn the names, shapes and dtypes of the variables
        head = Inputs(inputs.get(slice(0, 1)), inputs.dims, {}, inputs.caller)
        with probe_session(model, head, **{**session_kw, "stats": stats}) as s:
            template, coords = _ready(make_chunk_fn, s)(head.data, True)
            template = _on_host(template, s.device)
            attrs.update(device=str(s.device), dtype=str(s.dtype).replace("torch.", ""))
        # Ship the model as bytes: each task unpickles its own copy (its own hooks, its own
        # device), and no serializer of the cluster gets to rebuild the module its own way.
        shared = dask.delayed(_dumps(model), pure=True)
        tasks = [
            dask.delayed(_probe_block, pure=True, nout=None)(
                shared,
                inputs.data[bounds[j] : bounds[j + 1]],
                inputs.dims,
                make_chunk_fn,
                session_kw,
                stats,
            )
            for j in range(len(block_sizes))
        ]
        variables: Variables = {}
        for name, (dims, array, var_attrs) in template.items():
            blocks = [
                da.from_delayed(task[name], shape=(size, *array.shape[1:]), dtype=array.dtype)
                for task, size in zip(tasks, block_sizes, strict=True)
            ]
            variables[name] = (dims, da.concatenate(blocks), var_attrs)
        per_model.append(variables)
    if any(_is_gradient(v) for v in template):
        attrs["n_nonfinite"] = -1  # not counted before compute; the metrics check their inputs
    return assemble(per_model, inputs, ensemble, coords, attrs)


def _stats_for(
    model: torch.nn.Module, inputs: Inputs, session_kw: dict[str, Any]
) -> list[_Stat] | None:
    """Population statistics over the whole lazy set, computed once before the blocks are probed."""
    if session_kw["batchnorm"] != "population":
        return None
    run, device = resolve_device(unwrap_model(model), session_kw["device"], session_kw["caller"])
    dtype = compute_dtype(run, inputs, device, session_kw["caller"])
    batch = session_kw["batch_size"]
    batch = 256 if batch == "auto" else int(batch)
    with preserved_state(run):
        return population_statistics(run, inputs, batch, device, dtype, session_kw["caller"])


def _dumps(model: torch.nn.Module) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - distributed brings cloudpickle
        return pickle.dumps(model)
    return cloudpickle.dumps(model)


def _probe_block(
    payload: bytes,
    block: np.ndarray,
    dims: tuple[str, ...],
    make_chunk_fn: MakeChunkFn,
    session_kw: dict[str, Any],
    stats: list[_Stat] | None,
) -> dict[str, np.ndarray]:
    inputs = Inputs(shared_tensor(np.asarray(block)), dims, {}, session_kw["caller"])
    model = pickle.loads(payload)
    out: dict[str, list[np.ndarray]] = {}
    with probe_session(model, inputs, **{**session_kw, "stats": stats}) as s:
        chunk_fn = _ready(make_chunk_fn, s)
        for i, sl in enumerate(chunks(inputs.n, s.batch_size)):
            variables, _ = chunk_fn(inputs.get(sl), i == 0)
            for name, (_, array, _) in variables.items():
                out.setdefault(name, []).append(array)
        device = s.device
    return _unshared({name: _join(finish_host(parts, device)) for name, parts in out.items()})
