"""The ``shatterkit`` command line: ``probe`` tables, usage errors, and ``reproduce`` wiring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from shatterkit import cli, reproduce


@pytest.fixture(autouse=True)
def _models_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_probe_prints_a_table_per_layer(capsys):
    assert cli.main(["probe", "_cli_models:tiny_model", "--n", "64"]) == 0
    out = capsys.readouterr().out
    assert "model: _cli_models:tiny_model (Sequential, " in out
    assert "inputs: line: the paper's grid on [-2, 2]; 64 points" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    for column in ("shattering index", "spectral exponent", "fraction on", "co-activation"):
        assert column in lines[header]
    rows = [line.split()[0] for line in lines[header + 1 :]]
    assert rows == ["input", "layers.0.relu", "layers.1.relu", "layers.2.relu"]
    # batch norm keeps co-activation near 1/4 (the theorems' regime); 0.05: 16 units, 64 points
    coactivation = [float(line.split()[-2]) for line in lines[header + 2 :]]
    assert all(abs(c - 0.25) < 0.05 for c in coactivation)


#: ``shatterkit probe`` on the zoo's feedforward builder, 2 layers of 8 units
FEEDFORWARD = ["probe", "shatterkit.models:feedforward", "-a", "depth=2", "-a", "width=8"]


def test_probe_arguments_and_seed(capsys):
    argv = [*FEEDFORWARD, "-a", "bias=True", "--n", "32", "--seed", "3"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == first  # --seed reaches the builder's seed ...
    assert cli.main([*argv[:-1], "4"]) == 0
    assert capsys.readouterr().out != first  # ... and changes its weights


@pytest.mark.parametrize("inputs", ["segment", "ray"])
def test_probe_vector_inputs(capsys, inputs):
    argv = [*FEEDFORWARD, "-a", "in_features=5", "--inputs", inputs, "--n", "32"]
    assert cli.main(argv) == 0
    assert f"inputs: {inputs}: " in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "shatterkit", "probe", "nonsense"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "shatterkit probe: error: MODEL must be 'module:function'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nonsense", "MODEL must be 'module:function'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("_cli_models:tiny_modle", "has no attribute 'tiny_modle'; close matches: 'tiny_model'"),
        (
            "_cli_models:not_a_model",
            "must return a torch.nn.Module. Got an object of type int instead.",
        ),
        (":tiny_model", "MODEL must be 'module:function'"),
        ("shatterkit.models:feedforward", "missing 1 required positional argument: 'depth'"),
        ("_cli_models:conv", "cannot tell the input shape of Sequential"),
        ("_cli_models:two_outputs", "On the command line: --output K."),
    ],
)
def test_bad_model_spec_exits_2(capsys, model, message):
    assert cli.main(["probe", model]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: shatterkit probe")
    assert "shatterkit probe: error: " in err and message in err
    assert "Traceback" not in err


def test_library_errors_exit_1(capsys):
    argv = ["probe", "_cli_models:tiny_model", "--input-shape", "3"]  # a 1-input net fed 3
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("shatterkit probe: error: ") and "--traceback" in err


def test_argparse_errors_exit_2(capsys):
    assert cli.main(["probe"]) == 2
    assert "the following arguments are required: MODEL" in capsys.readouterr().err
    assert cli.main(["probe", "_cli_models:tiny_model", "--inputs", "cloud"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0


def test_reproduce_passes_its_options(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_run(out, **kw):
        calls.append((out, kw))
        table = pd.DataFrame(
            [
                {
                    "item": "24 layers",
                    "quantity": "SI",
                    "shown": "0.1",
                    "paper": "white",
                    "verdict": "disagrees",
                },
                {
                    "item": "1 layer",
                    "quantity": "SI",
                    "shown": "0.0",
                    "paper": "brown",
                    "verdict": "agrees",
                },
            ]
        )
        files = {"report.md": tmp_path / "report.md"}
        return reproduce.Report(tmp_path, {}, table, files, {"figure1": 1.0}, {}, "")

    monkeypatch.setattr(reproduce, "run", fake_run)
    argv = [
        "reproduce",
        "--out",
        str(tmp_path),
        "--quick",
        "--seeds",
        "4",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert calls == [
        (str(tmp_path), {"quick": True, "seeds": 4, "device": "cpu", "progress": False})
    ]
    out = capsys.readouterr().out
    assert "1 disagree" in out and "24 layers: SI 0.1 (paper: white)" in out


def test_reproduce_rejects_one_seed(capsys):
    assert cli.main(["reproduce", "--seeds", "1"]) == 2
    assert "--seeds must be an int >= 2. Got 1 instead." in capsys.readouterr().err


@pytest.mark.requires_torchvision
def test_probe_torchvision_name(capsys):
    pytest.importorskip("torchvision")
    argv = ["probe", "resnet18", "--n", "20", "--size", "32", "--output", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "model: resnet18 (ResNet, " in out and "inputs: image-segment: " in out
    assert "layer1.0.relu#1" in out  # a module called twice gets two rows
    assert cli.main(["probe", "resnet19"]) == 2
    assert "close matches: 'resnet18'" in capsys.readouterr().err
