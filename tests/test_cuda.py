"""The GPU path against the CPU path: same numbers, the model left as found, no host syncs per batch.

Every test here needs a CUDA device and is skipped (with that reason) elsewhere;
``benchmarks/gpu.sh`` runs them on a GPU machine with ``pytest -m requires_cuda``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import assert_same_state, make_model, model_inputs, snapshot

from shatterkit import ActivationProbe, GradientProbe, activation_patterns, input_gradients

pytestmark = [
    pytest.mark.requires_cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA device; this machine has none (benchmarks/gpu.sh runs these on one)",
    ),
]

TOL = {"rtol": 1e-9, "atol": 1e-12}  # float64 on both devices


@pytest.mark.parametrize("kind", ["mlp", "conv", "residual", "batchnorm"])
@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_gradients_on_cuda_equal_the_cpu_ones(kind, batch_size):
    model = make_model(kind)
    x = model_inputs(kind, n=20)
    unit = 1 if kind == "conv" else None
    cpu = input_gradients(model, x, output=unit, batch_size=batch_size)
    before = snapshot(model)
    gpu = input_gradients(model, x, output=unit, batch_size=batch_size, device="cuda")
    assert_same_state(before, snapshot(model))  # probed a copy: the CPU model is untouched
    assert gpu.attrs["device"].startswith("cuda")
    np.testing.assert_allclose(gpu["gradient"].values, cpu["gradient"].values, **TOL)


@pytest.mark.parametrize("kind", ["mlp", "conv", "residual", "batchnorm"])
@pytest.mark.parametrize("packed", [False, True])
def test_patterns_on_cuda_equal_the_cpu_ones(kind, packed):
    model = make_model(kind)
    x = model_inputs(kind, n=20)
    cpu = activation_patterns(model, x, batch_size=6, packed=packed)
    gpu = activation_patterns(model, x, batch_size=6, packed=packed, device="cuda")
    np.testing.assert_array_equal(gpu["pattern"].values, cpu["pattern"].values)
    assert gpu["layer"].values.tolist() == cpu["layer"].values.tolist()


def test_a_model_on_cuda_stays_there_and_unchanged():
    model = make_model("batchnorm").cuda().train()
    x = model_inputs("batchnorm", n=12)
    before = snapshot(model)
    ds = GradientProbe(model, layers="all", batch_size=5).fit_transform(x)
    pat = ActivationProbe(model, batch_size=5, packed=True).fit_transform(x)
    assert_same_state(before, snapshot(model))
    assert next(model.parameters()).device.type == "cuda" and model.training
    cpu_model = make_model("batchnorm")
    ref = input_gradients(cpu_model, x, layers="all", batch_size=5)
    np.testing.assert_allclose(ds["gradient"].values, ref["gradient"].values, **TOL)
    ref_pat = activation_patterns(cpu_model, x, batch_size=5, packed=True)
    np.testing.assert_array_equal(pat["pattern"].values, ref_pat["pattern"].values)


@pytest.mark.parametrize("dtype, bound", [("bfloat16", 0.03), ("float16", 0.005)])
def test_autocast_on_cuda_stays_close_to_float32(dtype, bound):
    """Median per-sample relative error within a few roundings of the dtype (bfloat16 keeps 8
    bits, float16 11; on the CPU bfloat16 gives 0.005 on this model)."""
    model = make_model("conv", dtype=torch.float32)
    x = model_inputs("conv", n=32, dtype=torch.float32)
    ref = input_gradients(model, x, output=1, device="cuda")["gradient"].values
    low = input_gradients(model, x, output=1, device="cuda", autocast=dtype)
    assert low["gradient"].dtype == np.float32
    diff = (low["gradient"].values - ref).reshape(len(x), -1)
    rel = np.linalg.norm(diff, axis=1) / np.linalg.norm(ref.reshape(len(x), -1), axis=1)
    assert np.median(rel) < bound, f"{dtype}: median relative error {np.median(rel):.3g}"


@pytest.mark.parametrize("probe", ["gradients", "patterns", "packed"])
def test_no_host_sync_per_batch(probe):
    """torch's sync debug mode warns at every synchronising call; the count must not grow with the
    number of batches (setup and the final copy back may sync, the batch loop may not)."""
    model = make_model("residual", dtype=torch.float32).cuda()

    def syncs(n_batches: int) -> int:
        x = model_inputs("residual", n=8 * n_batches, dtype=torch.float32)
        kw = {"packed": True} if probe == "packed" else {}
        run = input_gradients if probe == "gradients" else activation_patterns
        run(model, x, batch_size=8, **kw)  # warm-up: lazy CUDA initialisation syncs once
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run(model, x, batch_size=8, **kw)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert syncs(8) == syncs(2)
