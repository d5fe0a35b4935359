"""Interrupted zarr streams: the gaps not covered in test_probes_scale.py.

An interruption before the store exists, one inside the second member of an ensemble, one between
writing a batch and flagging it, and resuming with a run that does not match the store.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import make_model, model_inputs
from torch import nn

from shatterkit import activation_patterns, input_gradients
from shatterkit.probes import _driver

pytest.importorskip("zarr", reason="needs the io extra: pip install shatterkit[io]")
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")


class Interrupt(nn.Module):
    """Wraps a model; raises KeyboardInterrupt on forward number ``at``; counts forwards."""

    def __init__(self, inner: nn.Module, at: int | None = None) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner(x)


def flags(store) -> np.ndarray:
    return xr.open_zarr(store)["batch_nonfinite"].values


# Forwards of a batch-norm model: 1 is the first batch, stopped at its first batch-norm call (the
# population statistics are not there yet); 2 counts the batch-norm calls on one sample, 3
# measures the module outputs, 4 gathers the statistics (30 or 40 inputs fit in one gathering
# batch of 4 x batch_size); 5 runs the first batch again. A model without batch norm runs its
# batches and nothing else.
BN_STATS = 4


@pytest.mark.parametrize(
    ("kind", "at"),
    [("mlp", 1), ("batchnorm", 1), ("batchnorm", 2), ("batchnorm", 4), ("batchnorm", 5)],
    ids=["first-batch", "bn-first-batch", "bn-check", "bn-gathering", "bn-first-batch-again"],
)
def test_interrupted_before_the_store_exists(tmp_path, kind, at):
    """Interrupted before the first batch is written: no store exists yet."""
    inner = make_model(kind)
    x = model_inputs(kind, n=30)
    store = tmp_path / "g.zarr"
    with pytest.raises(KeyboardInterrupt):
        input_gradients(Interrupt(inner, at=at), x, batch_size=10, store=store)
    assert not store.exists()
    resumed = Interrupt(inner)
    out = input_gradients(resumed, x, batch_size=10, store=store, resume=True)
    # nothing to keep: every batch is computed (after the statistics, for batch norm)
    assert resumed.calls == (BN_STATS if kind == "batchnorm" else 0) + 3
    ref = input_gradients(inner, x, batch_size=10)
    xr.testing.assert_identical(ref.drop_attrs(), out.load().drop_attrs())


def test_keyboard_interrupt_in_the_second_ensemble_member(tmp_path):
    """Member 0 finishes; member 1 stops in its third batch. Resuming skips member 0 entirely
    (not even its batch-norm statistics are recomputed) and computes member 1's last two."""
    a, b = make_model("batchnorm", seed=0), make_model("batchnorm", seed=1)
    x = model_inputs("batchnorm", n=40)
    store = tmp_path / "e.zarr"
    # member 1: forwards 1-4 lead to the statistics (see BN_STATS); 5 and 6 are batches 0 and
    # 1, 7 would be batch 2
    stats = BN_STATS
    first, second = Interrupt(a), Interrupt(b, at=stats + 3)
    with pytest.raises(KeyboardInterrupt):
        input_gradients([first, second], x, batch_size=10, store=store, layers="all")
    assert first.calls == stats + 4
    np.testing.assert_array_equal(flags(store), [[0, 0, 0, 0], [0, 0, -1, -1]])
    ref = input_gradients([Interrupt(a), Interrupt(b)], x, batch_size=10, layers="all")
    ra, rb = Interrupt(a), Interrupt(b)
    out = input_gradients([ra, rb], x, batch_size=10, store=store, layers="all", resume=True)
    assert ra.calls == 0
    assert rb.calls == stats + 2
    xr.testing.assert_identical(ref.drop_attrs(), out.load().drop_attrs())


def test_interrupt_between_writing_a_batch_and_flagging_it(tmp_path, monkeypatch):
    """A batch written but not flagged counts as not done: resuming computes it again."""
    inner = make_model("mlp")
    x = model_inputs("mlp", n=30)
    store = tmp_path / "p.zarr"
    mark_done, calls = _driver._mark_done, [0]

    def interrupted_mark_done(*args, **kw):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        mark_done(*args, **kw)

    monkeypatch.setattr(_driver, "_mark_done", interrupted_mark_done)
    with pytest.raises(KeyboardInterrupt):
        activation_patterns(Interrupt(inner), x, batch_size=10, packed=True, store=store)
    monkeypatch.setattr(_driver, "_mark_done", mark_done)
    np.testing.assert_array_equal(flags(store), [0, -1, -1])
    resumed = Interrupt(inner)
    out = activation_patterns(resumed, x, batch_size=10, packed=True, store=store, resume=True)
    assert resumed.calls == 2
    ref = activation_patterns(Interrupt(inner), x, batch_size=10, packed=True)
    xr.testing.assert_identical(ref, out.load())


def test_resuming_a_finished_store_computes_nothing(tmp_path):
    inner = make_model("mlp")
    x = model_inputs("mlp", n=30)
    done = input_gradients(Interrupt(inner), x, batch_size=10, store=tmp_path / "g.zarr").load()
    again = Interrupt(inner)
    out = input_gradients(again, x, batch_size=10, store=tmp_path / "g.zarr", resume=True)
    assert again.calls == 0
    xr.testing.assert_identical(done, out.load())


MISMATCHES = {
    "other-model-class": lambda m, x, **kw: input_gradients(Interrupt(m[0]), x, **kw),
    "other-probe": lambda m, x, **kw: activation_patterns(m[0], x, **kw),
    "other-inputs": lambda m, x, **kw: input_gradients(m[0], x[:28], **kw),
    "other-parameters": lambda m, x, **kw: input_gradients(m[0], x, layers=["0"], **kw),
    "ensemble-for-single": lambda m, x, **kw: input_gradients(m, x, **kw),
}


@pytest.mark.parametrize("mismatch", list(MISMATCHES))
def test_resume_refuses_a_store_of_another_run(tmp_path, mismatch):
    models = [make_model("mlp", seed=s) for s in range(2)]
    x = model_inputs("mlp", n=30)
    store = tmp_path / "g.zarr"
    input_gradients(models[0], x, batch_size=10, store=store)
    with pytest.raises(
        ValueError,
        match=r"resume=True needs the probe, parameters, inputs and ensemble of the interrupted "
        r"run: the store at .* holds shatterkit\.input_gradients\(batchnorm='population', "
        r"layers=None\) on 30 samples; this run is .*Pass resume=False to overwrite it",
    ):
        MISMATCHES[mismatch](models, x, batch_size=10, store=store, resume=True)
    # a store of another ensemble size is refused the same way
    store2 = tmp_path / "e.zarr"
    input_gradients(models, x, batch_size=10, store=store2)
    with pytest.raises(ValueError, match=r"on 30 samples and 2 models; this run is .* 3 models"):
        input_gradients([*models, models[0]], x, batch_size=10, store=store2, resume=True)
