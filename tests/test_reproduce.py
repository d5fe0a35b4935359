"""The paper's reproduction: one quick run, whose numbers, files and report are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from shatterkit import reproduce
from shatterkit.reproduce import run

# the quick run is shared by every test here: keep them on one xdist worker
pytestmark = pytest.mark.xdist_group("reproduce")

NAMES = ("figure1", "depth_sweep", "decay", "coactivation", "looks_linear")
FIGURES = ("figure1", "depth_sweep", "autocorrelation", "decay", "coactivation", "looks_linear")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> reproduce.Report:
    return run(tmp_path_factory.mktemp("repro"), quick=True, progress=False)


def _si(report: reproduce.Report, panel: str) -> float:
    return float(report.results["figure1"]["shattering_index"].sel(panel=panel))


# -- the paper's claims, on the quick run ---------------------------------------------------------


def test_deep_net_more_shattered_than_shallow_and_resnet_between(report):
    shallow = _si(report, "1 layer")
    resnet = _si(report, "50-block resnet, BN")
    for deep in ("24 layers, centring", "24 layers, BN"):
        assert shallow < resnet < _si(report, deep)
    # the paper's "much closer to brown": nearer the 1-layer net than the 24-layer one
    assert resnet - shallow < _si(report, "24 layers, centring") - resnet


def test_brown_noise_below_white_noise(report):
    assert _si(report, "brown noise") < 0.1 < 0.8 < _si(report, "white noise")
    sweep = report.results["depth_sweep"]["reference_shattering_index"]
    assert float(sweep.sel(reference="brown noise")) < float(sweep.sel(reference="white noise"))


def test_decay_fit_prefers_exponential_for_feedforward_and_power_law_for_bn_resnet(report):
    ds = report.results["decay"]
    assert str(ds["preferred"].sel(architecture="feedforward_bn").item()) == "exponential"
    assert str(ds["preferred"].sel(architecture="resnet_bn").item()) == "power_law"
    # the feedforward rate against the theorem's 2**-L; 0.1: three seeds
    assert float(ds["exp_r"].sel(architecture="feedforward_bn")) == pytest.approx(0.5, abs=0.1)


def test_decay_measured_beside_theory(report):
    ds = (
        report.results["decay"]
        .sel(architecture="feedforward_bn")
        .dropna("depth", subset=["measured"])
    )
    np.testing.assert_allclose(ds["theory"], 2.0 ** -ds["depth"].values)
    # within a factor 1.5 of 2**-L at every depth (3 seeds, 2016 pairs)
    ratio = ds["measured"] / ds["theory"]
    assert bool(((ratio > 2 / 3) & (ratio < 1.5)).all()), ratio.values


def test_blockwise_product_decays_as_its_stated_power_law():
    depths = [4096, 8192]
    rho = reproduce._blockwise_resnet_bn(depths, 1.0, 2.0)
    local = math.log(rho[0] / rho[1]) / math.log(2)
    assert local == pytest.approx(1 / (2 * (1 - 1 / math.pi)), abs=0.01)


def test_batch_norm_keeps_coactivation_at_a_quarter(report):
    co = report.results["coactivation"]["coactivation"]
    for name in ("feedforward_bn", "resnet_bn"):
        assert float(co.sel(architecture=name).mean()) == pytest.approx(0.25, abs=0.02)
    assert float(co.sel(architecture="feedforward").isel(depth=-1).mean()) > 0.35


def test_looks_linear_gradient_is_constant(report):
    ds = report.results["looks_linear"]
    assert float(ds["shattering_index"].sel(architecture="looks_linear").max()) == 0.0
    assert float(ds["gradient_variation"].sel(architecture="looks_linear").max()) < 1e-4
    assert float(ds["shattering_index"].sel(architecture="feedforward_bn").min()) > 0.8


# -- the report -----------------------------------------------------------------------------------


def test_files_exist(report):
    expected = {f"{n}.png" for n in FIGURES} | {f"{n}.nc" for n in NAMES} | {"report.md"}
    assert set(report.files) == expected
    for name, path in report.files.items():
        assert path.parent == report.out and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.parametrize("name", NAMES)
def test_netcdf_reopens_identical(report, name):
    with xr.open_dataset(report.files[f"{name}.nc"], engine=reproduce.NETCDF_ENGINE) as back:
        xr.testing.assert_identical(back.load(), report.results[name])


@pytest.mark.parametrize("name", NAMES)
def test_netcdf3_without_the_io_extra(report, name, tmp_path):
    # a fresh install has no h5netcdf: run() then writes with scipy's netCDF3 writer
    path = tmp_path / f"{name}.nc"
    report.results[name].to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as back:
        xr.testing.assert_identical(back.load(), report.results[name])


def test_report_md_table(report):
    text = report.files["report.md"].read_text(encoding="utf-8")
    assert text == report.markdown
    assert "| # | experiment | item | quantity | measured (± std over seeds) | paper |" in text
    for section in ("## Setup choices", "## Measured vs the paper", "## Where measurement and "):
        assert section in text
    # the figure's variant is stated
    assert "**mean-centring**" in text and "**batch norm**" in text
    # every row of the table is in the markdown, with its numbers
    for row in report.table.itertuples(index=False):
        assert f"| {row.item} | {row.quantity} | {row.shown} |" in text


def test_report_table_numbers_come_from_the_data(report):
    table = report.table.set_index(["section", "item", "quantity"])
    row = table.loc[("figure 1", "24 layers, centring", "shattering index (SI)")]
    assert row["measured"] == pytest.approx(_si(report, "24 layers, centring"))
    assert row["verdict"] == "agrees"
    assert set(report.table["verdict"]) <= {"agrees", "disagrees", "reference", "not stated"}
    # every disagreement is listed in words
    listed = report.markdown.split("## Where measurement and paper disagree")[1].split("##")[0]
    assert listed.count("\n- ") == len(report.disagreements)


def test_feedforward_without_bn_drift_is_reported(report):
    # outside the theorems' regime the measurement must not be forced to agree
    rows = report.disagreements
    drift = rows[
        (rows["item"].str.startswith("feedforward, L ="))
        & (rows["quantity"] == "gradient correlation")
    ]
    assert len(drift) == 1
    assert drift.iloc[0]["measured"] > drift.iloc[0]["predicted"]


# -- the experiment functions ---------------------------------------------------------------------


def test_settings_and_timings(report):
    assert report.settings["quick"] is True and report.settings["seeds"] == 3
    assert set(report.timings) == {*NAMES, "figures and netCDF"}
    assert report.results["figure1"].sizes["model"] == 3


def test_depth_sweep_layout():
    ds = reproduce.depth_sweep(
        (1, 2), architectures=("feedforward", "resnet_bn"), n=24, width=8, seeds=2, max_lag=3
    )
    assert ds["shattering_index"].dims == ("architecture", "depth")
    assert ds["autocorrelation"].sizes == {"architecture": 2, "depth": 2, "lag": 4}
    np.testing.assert_allclose(ds["autocorrelation"].sel(lag=0), 1.0)
    assert ds["reference"].values.tolist() == ["brown noise", "white noise"]


def test_networks_without_normalisation_get_biases_on_the_grid():
    ff = reproduce._build("feedforward", 2, width=4, in_features=1, biased=True, seed=0)
    res = reproduce._build("resnet", 2, width=4, in_features=1, biased=True, seed=0)
    assert ff.layers[0].linear.bias is not None
    assert res.stem.bias is not None
    # the stem's kinks -b/w must not all coincide (independent streams for weights and biases)
    kinks = -res.stem.bias.detach() / res.stem.weight.detach()[:, 0]
    assert len(set(np.round(kinks.numpy(), 6))) == 4
    bn = reproduce._build("resnet_bn", 2, width=4, in_features=1, biased=True, seed=0)
    assert bn.stem.bias is None


def test_same_seed_same_result():
    a = reproduce.figure1(n=16, width=8, deep=3, blocks=3, seeds=2, seed=5)
    b = reproduce.figure1(n=16, width=8, deep=3, blocks=3, seeds=2, seed=5)
    xr.testing.assert_identical(a, b)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: reproduce.depth_sweep((1,), architectures=("mlp",)),
            ValueError,
            r"The 'architectures' parameter of depth_sweep must be a sequence of names from",
        ),
        (
            lambda: reproduce.depth_sweep((0, 1)),
            ValueError,
            r"The 'depths' parameter of depth_sweep must be a non-empty sequence of distinct ints",
        ),
        (
            lambda: reproduce.decay(architectures=("feedforward_centring",)),
            ValueError,
            r"The 'architectures' parameter of decay",
        ),
        (lambda: reproduce.coactivation(0), ValueError, r"The 'depth' parameter of coactivation"),
        (
            lambda: run("unused", seeds=1),
            ValueError,
            r"The 'seeds' parameter of run must be None or an int >= 2. Got 1 instead.",
        ),
        (lambda: run("unused", quick="yes"), TypeError, r"The 'quick' parameter of run must be"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
