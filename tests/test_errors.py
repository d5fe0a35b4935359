"""Every bad input of docs/errors.md gets the error the table promises; each row is a case here.

The ids of ``ROWS`` and ``WORKS`` are the first column of the table in ``docs/errors.md``;
``test_the_table_and_the_tests_list_the_same_cases`` keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import make_model, model_inputs
from sklearn.exceptions import NotFittedError
from torch import nn

from shatterkit import ActivationProbe, GradientProbe, activation_patterns, input_gradients

DOCS = Path(__file__).parents[1] / "docs" / "errors.md"


def mlp() -> nn.Module:
    return make_model("mlp")  # 2 -> 7 -> ReLU -> 5 -> LeakyReLU -> 1, float64


def three_outputs() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).double()


def x(n: int = 5) -> torch.Tensor:
    return model_inputs("mlp", n=n)


def with_value(value: float, at: tuple[int, int]) -> torch.Tensor:
    out = x()
    out[at] = value
    return out


def meta_model() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def lazy_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.LazyLinear(1)).double()


def inference_model() -> nn.Module:
    with torch.inference_mode():
        return mlp()


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 3).double()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h[:, 0], h[:, 1]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 3), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


MODEL = r"must be a torch\.nn\.Module or a sequence of them\. Got"
FLOAT = r"must have a real floating dtype \(float32 or float64\)\. Got torch\."

#: (call, error type, message pattern); the id is the row of docs/errors.md
ROWS = [
    # the model
    pytest.param(
        lambda: input_gradients("net.pt", x()),
        TypeError,
        rf"The 'model' parameter of input_gradients {MODEL} str instead",
        id="model-not-a-module",
    ),
    pytest.param(
        lambda: GradientProbe(lambda z: z).fit(),
        TypeError,
        rf"The 'model' parameter of GradientProbe {MODEL} function instead",
        id="model-not-a-module-estimator",
    ),
    pytest.param(
        lambda: activation_patterns([mlp(), "net.pt"], x()),
        TypeError,
        rf"The 'model' parameter of activation_patterns {MODEL} str at position 1 instead",
        id="ensemble-member-not-a-module",
    ),
    pytest.param(
        lambda: input_gradients([], x()),
        ValueError,
        r"The 'model' parameter of input_gradients must not be an empty ensemble",
        id="empty-ensemble",
    ),
    pytest.param(
        lambda: input_gradients(meta_model(), x()),
        ValueError,
        r"The 'model' parameter of input_gradients must hold real parameters\. Got a model on "
        r"the meta device \('0\.weight', '0\.bias', '2\.weight' and 1 more\); load its weights",
        id="model-on-meta-device",
    ),
    pytest.param(
        lambda: ActivationProbe(meta_model()).fit_transform(x()),
        ValueError,
        r"The 'model' parameter of ActivationProbe must hold real parameters\. Got a model on "
        r"the meta device",
        id="model-on-meta-device-estimator",
    ),
    pytest.param(
        lambda: input_gradients(lazy_model(), x()),
        ValueError,
        r"The 'model' parameter of input_gradients must have initialised parameters\. Got "
        r"uninitialised lazy parameters \('2\.weight', '2\.bias'\); run one forward",
        id="model-with-lazy-parameters",
    ),
    pytest.param(
        lambda: GradientProbe(inference_model()).fit(),
        ValueError,
        r"The 'model' parameter of GradientProbe must have parameters usable by autograd",
        id="model-made-in-inference-mode-estimator",
    ),
    pytest.param(
        lambda: input_gradients(inference_model(), x()),
        ValueError,
        r"The 'model' parameter of input_gradients must have parameters usable by autograd\. "
        r"Got inference tensors \('0\.weight', .*\), made under torch\.inference_mode\(\)",
        id="model-made-in-inference-mode",
    ),
    pytest.param(
        lambda: input_gradients(mlp().half(), x().float()),
        TypeError,
        r"The 'model' parameter of input_gradients must be float32 or float64 on the CPU \(the "
        r"probe computes in the model's dtype\)\. Got a float16 model instead; convert it",
        id="float16-model-on-cpu",
    ),
    # the inputs
    pytest.param(
        lambda: input_gradients(mlp(), torch.zeros(0, 2, dtype=torch.float64)),
        ValueError,
        r"The 'X' parameter of input_gradients must hold at least one sample\. Got 0",
        id="empty-input-set",
    ),
    pytest.param(
        lambda: activation_patterns(
            mlp(), xr.DataArray(np.zeros((0, 2)), dims=("sample", "feature"))
        ),
        ValueError,
        r"The 'X' parameter of activation_patterns must hold at least one sample\. Got 0",
        id="empty-input-set-dataarray",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), torch.randn(5, 3, dtype=torch.float64)),
        ValueError,
        r"The 'X' parameter of input_gradients must match the model's input\. The model failed "
        r"on inputs of shape \(5, 3\) \(sample axis first\): mat1 and mat2 shapes",
        id="wrong-shape",
    ),
    pytest.param(
        lambda: activation_patterns(make_model("conv"), torch.randn(4, 3, 5, 5).double()),
        ValueError,
        r"The 'X' parameter of activation_patterns must match the model's input\. .*shape "
        r"\(4, 3, 5, 5\).*expected input\[4, 3, 5, 5\] to have 2 channels",
        id="wrong-shape-channels",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), torch.randn(5, dtype=torch.float64)),
        ValueError,
        r"The 'X' parameter of input_gradients must have a sample axis and at least one input "
        r"axis \(shape \(n_samples, \.\.\.\)\)\. Got shape \(5,\) instead",
        id="wrong-shape-no-input-axis",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), xr.DataArray(np.zeros((2, 5)), dims=("feature", "sample"))),
        ValueError,
        r"The 'X' parameter of input_gradients must have 'sample' as its first dim\. Got dims "
        r"\('feature', 'sample'\) instead",
        id="wrong-dims",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), xr.Dataset({"x": (("sample", "f"), np.zeros((3, 2)))})),
        TypeError,
        r"The 'X' parameter of input_gradients must be a DataArray, tensor or array of inputs\. "
        r"Got an xarray\.Dataset instead",
        id="dataset-as-inputs",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), torch.ones(5, 2, dtype=torch.int64)),
        TypeError,
        rf"The 'X' parameter of input_gradients {FLOAT}int64 instead; convert with \.float\(\)",
        id="int-inputs",
    ),
    pytest.param(
        lambda: activation_patterns(mlp(), np.ones((5, 2), dtype=np.complex64)),
        TypeError,
        rf"The 'X' parameter of activation_patterns {FLOAT}complex64 instead",
        id="complex-inputs",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), torch.ones(5, 2, dtype=torch.float16)),
        TypeError,
        r"The 'X' parameter of input_gradients must be float32 or float64 on the CPU\. "
        r"Got float16 instead; convert with \.float\(\)",
        id="float16-inputs-on-cpu",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), with_value(np.nan, (2, 0))),
        ValueError,
        r"The 'X' parameter of input_gradients must be finite\. Got NaN or inf in 1 sample\(s\), "
        r"first at index \[2\]",
        id="nan-inputs",
    ),
    pytest.param(
        lambda: ActivationProbe(mlp()).fit_transform(with_value(-np.inf, (4, 1))),
        ValueError,
        r"The 'X' parameter of activation_patterns must be finite\. Got NaN or inf in 1 "
        r"sample\(s\), first at index \[4\]",
        id="inf-inputs",
    ),
    # the output
    pytest.param(
        lambda: input_gradients(three_outputs(), x()),
        ValueError,
        r"The 'output' parameter of input_gradients must select one scalar per sample: the "
        r"model's output has shape \(5, 3\) \(3 values per sample\)\. Pass output=<int>",
        id="multi-output-with-output-none",
    ),
    pytest.param(
        lambda: input_gradients(TwoHeads(), x()),
        ValueError,
        r"The model's output must be a tensor for output=None in input_gradients\. Got tuple; "
        r"pass output=<callable>",
        id="tuple-output-with-output-none",
    ),
    pytest.param(
        lambda: GradientProbe(three_outputs(), output=3).fit_transform(x()),
        ValueError,
        r"The 'output' parameter of input_gradients must be an index in \[-3, 3\) for a model "
        r"with 3 outputs per sample\. Got 3 instead",
        id="output-index-out-of-range",
    ),
    pytest.param(
        lambda: input_gradients(three_outputs(), x(), output=-4),
        ValueError,
        r"must be an index in \[-3, 3\) for a model with 3 outputs per sample\. Got -4 instead",
        id="output-index-out-of-range-negative",
    ),
    pytest.param(
        lambda: input_gradients(three_outputs(), x(), output="logits"),
        TypeError,
        r"The 'output' parameter of input_gradients must be None, an int or a callable\. "
        r"Got 'logits' instead",
        id="output-of-wrong-type",
    ),
    pytest.param(
        lambda: input_gradients(three_outputs(), x(), output=lambda out: out[:, :2]),
        ValueError,
        r"The 'output' callable of input_gradients must return one scalar per sample, a tensor "
        r"of shape \(5,\)\. Got \(5, 2\) instead",
        id="output-callable-wrong-shape",
    ),
    # layers
    pytest.param(
        lambda: GradientProbe(Net(), layers=["fc3"]).fit(),
        ValueError,
        r"layer 'fc3' not found in Net; close matches: 'fc2', 'fc1'",
        id="unknown-layer",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), x(), layers=["5"]),
        ValueError,
        r"layer '5' not found in Sequential; available: '0', '1', '2', '3', '4'",
        id="unknown-layer-no-close-match",
    ),
    pytest.param(
        lambda: activation_patterns(mlp(), x(), layers=["relu"]),
        ValueError,
        r"rectifier layer 'relu' not found in Sequential; available: '1', '3'",
        id="unknown-rectifier-layer",
    ),
    pytest.param(
        lambda: activation_patterns(mlp(), x(), layers=[]),
        ValueError,
        r"The 'layers' parameter of activation_patterns must be 'rectifiers' or name at least one "
        r"rectifier call\. Got \[\] instead; available: \['1', '3'\]",
        id="empty-rectifier-layer-list",
    ),
    pytest.param(
        lambda: ActivationProbe(nn.Linear(2, 1).double()).fit_transform(x()),
        ValueError,
        r"The 'model' parameter of activation_patterns must make at least one rectifier call "
        r"\(ReLU, ReLU6, LeakyReLU, PReLU, CReLU, F\.relu, or a smooth activation such as "
        r"GELU\)\. Got Linear, which made no rectifier call",
        id="no-rectifier",
    ),
    # device
    pytest.param(
        lambda: input_gradients(mlp(), x(), device="cuda:7"),
        ValueError,
        r"The 'device' parameter of input_gradients must be an available device\. Got 'cuda:7'",
        id="device-not-there",
    ),
    pytest.param(
        lambda: GradientProbe(mlp(), device="cuda:7").fit(),
        ValueError,
        r"The 'device' parameter of GradientProbe must be an available device\. Got 'cuda:7'",
        id="device-not-there-estimator",
    ),
    pytest.param(
        lambda: activation_patterns(mlp(), x(), device="tpu"),
        ValueError,
        r"The 'device' parameter of activation_patterns must be a torch device such as 'cpu' or "
        r"'cuda:0'\. Got 'tpu' instead",
        id="device-unknown",
    ),
    pytest.param(
        lambda: input_gradients(mlp(), x(), device="meta"),
        ValueError,
        r"The 'device' parameter of input_gradients must be 'cpu' or an available accelerator "
        r"\('cuda', 'mps', 'xpu'\)\. Got 'meta' instead",
        id="device-meta",
    ),
    # parameters
    pytest.param(
        lambda: input_gradients(mlp(), x(), batch_size=0),
        ValueError,
        r"The 'batch_size' parameter of input_gradients must be an int in the range \[1, inf\) "
        r"or 'auto'\. Got 0 instead",
        id="batch-size-zero",
    ),
    pytest.param(
        lambda: activation_patterns(mlp(), x(), batch_size=-3),
        ValueError,
        r"The 'batch_size' parameter of activation_patterns must be an int in the range "
        r"\[1, inf\) or 'auto'\. Got -3 instead",
        id="batch-size-negative",
    ),
    pytest.param(
        lambda: GradientProbe(mlp(), batch_size=0).fit_transform(x()),
        ValueError,
        r"The 'batch_size' parameter of GradientProbe must be an int in the range \[1, inf\) or "
        r"a str among \{'auto'\}\. Got 0 instead",
        id="batch-size-zero-estimator",
    ),
    pytest.param(
        lambda: ActivationProbe(mlp(), batch_size=-1).fit(),
        ValueError,
        r"The 'batch_size' parameter of ActivationProbe must be an int in the range \[1, inf\)",
        id="batch-size-negative-estimator",
    ),
    pytest.param(
        lambda: GradientProbe(mlp()).transform(x()),
        NotFittedError,
        r"This GradientProbe instance is not fitted yet",
        id="transform-before-fit",
    ),
]


@pytest.mark.parametrize("call, error, match", ROWS)
def test_bad_input_gets_a_clear_error(call: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_errors_are_sklearn_style_value_or_type_errors() -> None:
    for row in ROWS:
        _, error, _ = row.values
        assert issubclass(error, (ValueError, TypeError)), row.id


# -- what must work -------------------------------------------------------------------------------


def _reference(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    leaf = inputs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf).sum(), leaf)
    return grad.numpy()


def test_inputs_made_in_inference_mode() -> None:
    model = mlp()
    with torch.inference_mode():
        x_inf = x()
    assert x_inf.is_inference()
    ds = input_gradients(model, x_inf)
    np.testing.assert_allclose(ds["gradient"].values, _reference(model, x()), rtol=1e-12)
    pats = activation_patterns(model, x_inf)
    np.testing.assert_array_equal(
        pats["pattern"].values, activation_patterns(model, x())["pattern"]
    )


def test_probe_called_inside_no_grad() -> None:
    model = mlp()
    with torch.no_grad():
        ds = input_gradients(model, x())
        est = GradientProbe(model).fit_transform(x())
        pats = activation_patterns(model, x())
        assert not torch.is_grad_enabled()
    expected = _reference(model, x())
    np.testing.assert_allclose(ds["gradient"].values, expected, rtol=1e-12)
    np.testing.assert_allclose(est["gradient"].values, expected, rtol=1e-12)
    assert pats["pattern"].shape == (5, 12)


def test_probe_called_inside_inference_mode() -> None:
    model = mlp()
    with torch.inference_mode():
        ds = input_gradients(model, x())
        assert torch.is_inference_mode_enabled()
    np.testing.assert_allclose(ds["gradient"].values, _reference(model, x()), rtol=1e-12)


def test_model_made_in_inference_mode_still_gives_patterns() -> None:
    """Patterns need no autograd, so inference-mode parameters are fine there."""
    ds = activation_patterns(inference_model(), x())
    np.testing.assert_array_equal(ds["pattern"].values, activation_patterns(mlp(), x())["pattern"])


def test_inplace_rectifier_on_the_inputs_rewrites_neither_them_nor_the_result() -> None:
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU())
    model = nn.Sequential(*model, nn.Linear(3, 1)).double()
    inputs = x(8)
    before = inputs.clone()
    ds = input_gradients(model, inputs, batch_size=3)
    pats = activation_patterns(model, inputs, batch_size=3)
    assert torch.equal(inputs, before)
    np.testing.assert_array_equal(pats["pattern"].values[:, :2], (before > 0).numpy())
    assert np.isfinite(ds["gradient"].values).all()


def test_selected_layer_that_never_runs_is_named_in_a_warning() -> None:
    class Unused(Net):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Linear(3, 3)

    with pytest.warns(RuntimeWarning, match=r"selected layer\(s\) \['spare'\] gave no tensor"):
        ds = input_gradients(Unused().double(), x(), layers="all")
    assert {"gradient:fc1", "gradient:fc2"} <= set(ds.data_vars)


def test_the_table_and_the_tests_list_the_same_cases() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", DOCS.read_text(), flags=re.M)
    works = [
        "inputs-made-in-inference-mode",
        "probe-called-inside-no-grad",
        "probe-called-inside-inference-mode",
        "model-made-in-inference-mode-patterns",
        "inplace-rectifier-on-the-inputs",
        "selected-layer-never-runs",
    ]
    assert len(rows) == len(set(rows))
    assert set(rows) == {row.id for row in ROWS} | set(works)
