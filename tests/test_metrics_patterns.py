"""Pattern metrics: closed forms, brute force, bool == packed, linear regions of known nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from _synthetic import pattern_dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shatterkit import metrics, theory
from shatterkit.probes import activation_patterns

# units 5 + 3 + 13: layers that straddle byte boundaries when packed
SIZES = [5, 3, 13]


def brute_force(bits: np.ndarray, sizes: list[int], op, max_lag: int | None = None) -> np.ndarray:
    """Mean over models, pairs and a layer's units of ``op(p_i, p_j)``, by explicit loops."""
    bits = bits if bits.ndim == 3 else bits[None]
    bounds = np.cumsum([0, *sizes])
    n = bits.shape[1]
    if max_lag is None:
        pairs = [[(i, j) for i in range(n) for j in range(n) if i != j]]
    else:
        pairs = [[(i, i + k) for i in range(n - k)] for k in range(max_lag + 1)]
    out = np.empty((len(sizes), len(pairs)))
    for layer in range(len(sizes)):
        units = slice(bounds[layer], bounds[layer + 1])
        for p, pair_list in enumerate(pairs):
            out[layer, p] = np.mean(
                [op(b[i, units], b[j, units]).mean() for b in bits for i, j in pair_list]
            )
    return out[:, 0] if max_lag is None else out


@pytest.fixture
def bits(rng: np.random.Generator) -> np.ndarray:
    return rng.random((2, 30, sum(SIZES))) < 0.4


# -- the done criteria ----------------------------------------------------------------


def test_independent_half_active_units_coactivate_a_quarter(rng: np.random.Generator) -> None:
    pat = pattern_dataset(rng.random((2, 500, 200)) < 0.5, [100, 100])
    # 2 * 100 units * ~250,000 pairs: the estimate's std is ~0.002, well inside 0.01
    np.testing.assert_allclose(metrics.coactivation_rate(pat), theory.coactivation_bn(), atol=0.01)
    lagged = metrics.coactivation_rate(pat, max_lag=5).sel(lag=slice(1, None))
    np.testing.assert_allclose(lagged, theory.coactivation_bn(), atol=0.01)


def test_always_on_or_off_units_coactivate_a_half(rng: np.random.Generator) -> None:
    on = rng.random(400) < 0.5  # each unit always on or always off
    pat = pattern_dataset(np.broadcast_to(on, (300, 400)), [400])
    expected = on.mean()  # ~ 1/2, exactly the fraction of always-on units
    np.testing.assert_allclose(metrics.coactivation_rate(pat).values, [expected], rtol=1e-12)
    assert abs(expected - theory.coactivation_feedforward()) < 0.05
    np.testing.assert_allclose(metrics.pattern_dispersion(pat), 0)
    assert int(metrics.linear_regions(pat)["n_regions"]) == 1


def test_all_pairs_statistics_match_brute_force(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, SIZES)
    coact = metrics.coactivation_rate(pat)
    np.testing.assert_allclose(coact.values, brute_force(bits, SIZES, np.logical_and), rtol=1e-12)
    disp = metrics.pattern_dispersion(pat)
    np.testing.assert_allclose(disp.values, brute_force(bits, SIZES, np.logical_xor), rtol=1e-12)
    assert coact.dims == ("layer",) and coact.name == "coactivation"
    assert coact["layer"].values.tolist() == ["l1", "l2", "l3"]
    assert coact["depth"].values.tolist() == [1, 2, 3]


def test_lagged_statistics_match_brute_force(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, SIZES)
    coact = metrics.coactivation_rate(pat, max_lag=4)
    np.testing.assert_allclose(
        coact.values, brute_force(bits, SIZES, np.logical_and, 4), rtol=1e-12
    )
    disp = metrics.pattern_dispersion(pat, max_lag=4)
    np.testing.assert_allclose(disp.values, brute_force(bits, SIZES, np.logical_xor, 4), rtol=1e-12)
    assert coact.dims == ("layer", "lag") and coact["lag"].values.tolist() == [0, 1, 2, 3, 4]
    # lag 0: a unit with itself is on as often as it is on
    np.testing.assert_allclose(coact.sel(lag=0), metrics.activation_rate(pat)["rate"])
    np.testing.assert_array_equal(disp.sel(lag=0), 0)


def test_lags_follow_t(bits: np.ndarray, rng: np.random.Generator) -> None:
    pat = pattern_dataset(bits, SIZES)
    shuffled = pat.isel(sample=rng.permutation(30))
    xr.testing.assert_identical(
        metrics.pattern_dispersion(shuffled, max_lag=3), metrics.pattern_dispersion(pat, max_lag=3)
    )
    xr.testing.assert_identical(metrics.linear_regions(shuffled), metrics.linear_regions(pat))


def test_activation_rate(rng: np.random.Generator) -> None:
    bits = rng.random((40, 8)) < 0.5
    bits[:, 0] = False  # dead
    bits[:, 1:3] = True  # linear
    out = metrics.activation_rate(pattern_dataset(bits, [4, 4]))
    np.testing.assert_allclose(out["unit_rate"].values, bits.mean(0))
    np.testing.assert_allclose(out["rate"].values, [bits[:, :4].mean(), bits[:, 4:].mean()])
    assert out["dead_units"].values.tolist() == [1, int((~bits[:, 4:].any(0)).sum())]
    assert out["linear_units"].values.tolist() == [2, int(bits[:, 4:].all(0).sum())]
    assert out["unit_layer"].values.tolist() == ["l1"] * 4 + ["l2"] * 4
    assert out["unit_depth"].values.tolist() == [1] * 4 + [2] * 4
    assert out["rate"].dims == ("layer",) and out["dead_units"].dims == ("layer",)
    for var in out.data_vars.values():
        assert {"long_name", "units"} <= set(var.attrs)


def test_activation_rate_keeps_models_for_unit_counts(bits: np.ndarray) -> None:
    out = metrics.activation_rate(pattern_dataset(bits, SIZES))
    assert out["rate"].dims == ("layer",)
    assert out["dead_units"].dims == ("model", "layer")
    assert out["unit_rate"].dims == ("model", "unit")


# -- bool and packed --------------------------------------------------------------------------

PATTERN_METRICS = [
    metrics.activation_rate,
    metrics.coactivation_rate,
    metrics.pattern_dispersion,
    metrics.linear_regions,
    lambda pat: metrics.coactivation_rate(pat, max_lag=3),
    lambda pat: metrics.pattern_dispersion(pat, max_lag=3),
]
IDS = ["rate", "coactivation", "dispersion", "regions", "coactivation_lag", "dispersion_lag"]


@pytest.mark.parametrize("metric", PATTERN_METRICS, ids=IDS)
def test_packed_and_bool_agree(bits: np.ndarray, metric) -> None:
    xr.testing.assert_identical(
        metric(pattern_dataset(bits, SIZES, packed=True)), metric(pattern_dataset(bits, SIZES))
    )


@settings(max_examples=30, deadline=None)
@given(
    bits=arrays(bool, st.tuples(st.integers(2, 12), st.integers(1, 20))),
    split=st.integers(0, 20),
)
def test_packed_and_bool_agree_for_any_pattern(bits: np.ndarray, split: int) -> None:
    units = bits.shape[1]
    sizes = [s for s in (min(split, units), units - min(split, units)) if s]
    for metric in PATTERN_METRICS[:4]:
        xr.testing.assert_identical(
            metric(pattern_dataset(bits, sizes, packed=True)), metric(pattern_dataset(bits, sizes))
        )


@settings(max_examples=30, deadline=None)
@given(bits=arrays(bool, st.tuples(st.integers(1, 3), st.integers(2, 12), st.integers(1, 20))))
def test_rates_lie_in_zero_one(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, [bits.shape[-1]])
    n = bits.shape[1]
    for out in (
        metrics.coactivation_rate(pat),
        metrics.pattern_dispersion(pat),
        metrics.coactivation_rate(pat, max_lag=n - 1),
        metrics.pattern_dispersion(pat, max_lag=n - 1),
        metrics.activation_rate(pat)["rate"],
    ):
        assert ((out >= 0) & (out <= 1)).all()
    # a unit is co-active at most as often as it is active
    assert (metrics.coactivation_rate(pat) <= metrics.activation_rate(pat)["rate"] + 1e-12).all()


# -- dask and netCDF --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", PATTERN_METRICS[:3] + PATTERN_METRICS[4:], ids=IDS[:3] + IDS[4:])
@pytest.mark.parametrize("packed", [False, True])
def test_dask_input_stays_lazy_and_agrees(bits: np.ndarray, metric, packed: bool) -> None:
    pat = pattern_dataset(bits, SIZES, packed=packed)
    lazy = metric(pat.chunk({"sample": 8}))
    variables = lazy.data_vars.values() if isinstance(lazy, xr.Dataset) else [lazy]
    assert all(v.chunks is not None for v in variables)
    xr.testing.assert_allclose(lazy.compute(), metric(pat))


def test_linear_regions_accepts_dask(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, SIZES, packed=True)
    xr.testing.assert_identical(
        metrics.linear_regions(pat.chunk({"sample": 8})), metrics.linear_regions(pat)
    )


@pytest.mark.parametrize("metric", PATTERN_METRICS, ids=IDS)
def test_netcdf_round_trip(bits: np.ndarray, metric, tmp_path) -> None:
    result = metric(pattern_dataset(bits, SIZES, packed=True))
    path = tmp_path / "result.nc"
    result.to_netcdf(path, engine="h5netcdf")
    opener = xr.open_dataset if isinstance(result, xr.Dataset) else xr.open_dataarray
    with opener(path, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), result)


# -- linear regions ---------------------------------------------------------------------------

KINKS = [-1.5, -0.7, -0.65, 0.1, 0.12, 1.3]


def kink_net(kinks: list[float]) -> torch.nn.Module:
    """x -> sum_j relu(x - k_j): linear pieces between the kinks k_j, one unit switching at each."""
    net = torch.nn.Sequential(
        torch.nn.Linear(1, len(kinks)), torch.nn.ReLU(), torch.nn.Linear(len(kinks), 1)
    ).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(-torch.tensor(kinks))
        net[2].weight.fill_(1.0)
        net[2].bias.zero_()
    return net


def line(n: int) -> xr.DataArray:
    t = np.linspace(-2, 2, n)
    return xr.DataArray(
        t[:, None], dims=("sample", "feature"), coords={"sample": np.arange(n), "t": ("sample", t)}
    )


def by_hand(kinks: list[float], x: xr.DataArray) -> np.ndarray:
    return x.values > np.asarray(kinks)  # unit j on where x - k_j > 0


@pytest.mark.parametrize("n", [5, 9, 33])
def test_refined_regions_of_a_known_net_at_coarse_sampling(n: int) -> None:
    net, x = kink_net(KINKS), line(n)
    pat = pattern_dataset(by_hand(KINKS, x), [len(KINKS)], names=["1"])
    refined = metrics.linear_regions(pat, model=net, inputs=x, refine=True)
    assert int(refined["n_regions"]) == len(KINKS) + 1
    assert refined["n_regions_layer"].values.tolist() == [len(KINKS) + 1]
    assert refined.attrs["refined"] == 1
    # sampled alone, the coarse grid merges the kinks that share an interval
    assert int(metrics.linear_regions(pat)["n_regions"]) < len(KINKS) + 1


def test_sampled_regions_of_a_known_net_at_fine_sampling() -> None:
    x = line(4001)  # spacing 0.001: every kink has an interval of its own
    out = metrics.linear_regions(pattern_dataset(by_hand(KINKS, x), [len(KINKS)], names=["1"]))
    assert int(out["n_regions"]) == len(KINKS) + 1
    assert out.attrs["refined"] == 0


def deep_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(1, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    ).double()


def test_refined_regions_per_layer_and_per_model() -> None:
    nets = [deep_net(0), deep_net(1)]
    fine = metrics.linear_regions(activation_patterns(nets, line(4097), progress=False))
    coarse = line(7)
    pat = activation_patterns(nets, coarse, progress=False, packed=True)
    refined = metrics.linear_regions(pat, model=nets, inputs=coarse, refine=True)
    assert refined["n_regions"].dims == ("model",)
    assert refined["n_regions_layer"].dims == ("model", "layer")
    # from 7 samples, the counts that 4097 samples find (the sampled count from 7 is lower)
    xr.testing.assert_identical(refined.drop_attrs(), fine.drop_attrs())
    assert (metrics.linear_regions(pat)["n_regions"] < fine["n_regions"]).all()


def test_refine_needs_the_model_that_made_the_patterns() -> None:
    x = line(9)
    pat = pattern_dataset(by_hand(KINKS, x), [len(KINKS)], names=["1"])
    with pytest.raises(
        ValueError,
        match=r"The 'model' parameter of linear_regions must be the torch model that made pat \(refine=True\)\. Got None instead\.",
    ):
        metrics.linear_regions(pat, inputs=x, refine=True)
    with pytest.raises(
        ValueError,
        match=r"The 'inputs' parameter of linear_regions must be the path's inputs \(refine=True\)\. Got None instead\.",
    ):
        metrics.linear_regions(pat, model=kink_net(KINKS), refine=True)
    with pytest.raises(
        ValueError,
        match=r"The 'model' parameter of linear_regions must be the model that made pat: .* Got patterns that differ at 4 sample\(s\) instead\.",
    ):
        metrics.linear_regions(pat, model=kink_net([k + 0.5 for k in KINKS]), inputs=x, refine=True)
    with pytest.raises(
        TypeError,
        match=r"The 'model' parameter of linear_regions must be the torch\.nn\.Module that made pat\. Got 'net' instead\.",
    ):
        metrics.linear_regions(pat, model="net", inputs=x, refine=True)
    with pytest.raises(
        TypeError,
        match=r"The 'model' parameter of linear_regions must be a sequence of 2 torch\.nn\.Module",
    ):
        metrics.linear_regions(
            pattern_dataset(np.stack([by_hand(KINKS, x)] * 2), [6], names=["1"]),
            model=kink_net(KINKS),
            inputs=x,
            refine=True,
        )
    with pytest.raises(
        TypeError,
        match=r"The 'inputs' parameter of linear_regions must be the path's inputs: a DataArray with a 'sample' dim matching pat",
    ):
        metrics.linear_regions(pat, model=kink_net(KINKS), inputs=x.values, refine=True)
    with pytest.raises(
        ValueError, match=r"The 'inputs' parameter of linear_regions must be the path's inputs"
    ):
        metrics.linear_regions(pat, model=kink_net(KINKS), inputs=line(10), refine=True)
    with pytest.raises(
        TypeError,
        match=r"The 'refine' parameter of linear_regions must be a bool\. Got 'yes' instead\.",
    ):
        metrics.linear_regions(pat, refine="yes")


def test_refine_leaves_the_model_as_found() -> None:
    net, x = kink_net(KINKS), line(5)
    net.train()
    before = [p.detach().clone() for p in net.parameters()]
    metrics.linear_regions(
        pattern_dataset(by_hand(KINKS, x), [6], names=["1"]), model=net, inputs=x, refine=True
    )
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


# -- error messages ---------------------------------------------------------------------------


def test_pattern_dataset_errors(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, SIZES)
    with pytest.raises(
        TypeError,
        match=r"The 'pat' parameter of coactivation_rate must be a pattern Dataset .* Got 1 instead\.",
    ):
        metrics.coactivation_rate(1)
    with pytest.raises(
        ValueError,
        match=r"The 'pat' parameter of activation_rate must be a pattern Dataset .* Got a Dataset with variables \[\] instead\.",
    ):
        metrics.activation_rate(pat.drop_vars("pattern"))
    with pytest.raises(
        ValueError, match=r"The 'pat' parameter of pattern_dispersion must be a pattern Dataset"
    ):
        metrics.pattern_dispersion(pat.drop_vars("layer"))
    with pytest.raises(
        TypeError,
        match=r"The 'pat' parameter of coactivation_rate must be a pattern of dtype bool \(or packed uint8\)\. Got a DataArray with dims \('model', 'sample', 'unit'\) instead\.",
    ):
        metrics.coactivation_rate(pat.assign(pattern=pat["pattern"].astype(float)))
    packed = pattern_dataset(bits, SIZES, packed=True)
    with pytest.raises(
        ValueError,
        match=r"The 'pat' parameter of linear_regions must be a packed pattern of dtype uint8 with 3 bytes for 21 units\.",
    ):
        metrics.linear_regions(packed.isel(byte=[0, 1]))
    with pytest.raises(
        ValueError,
        match=r"The 'pat' parameter of activation_rate must be a pattern Dataset with at least 2 samples\.",
    ):
        metrics.activation_rate(pat.isel(sample=[0]))
    with pytest.raises(
        ValueError,
        match=r"The 'max_lag' parameter of coactivation_rate must be an int in the range \[1, 29\]\. Got 0 instead\.",
    ):
        metrics.coactivation_rate(pat, max_lag=0)
    with pytest.raises(
        TypeError,
        match=r"The 'max_lag' parameter of pattern_dispersion must be None or an int\. Got '3' instead\.",
    ):
        metrics.pattern_dispersion(pat, max_lag="3")


@pytest.mark.parametrize("packed", [False, True])
def test_metrics_leave_their_input_as_found(bits: np.ndarray, packed: bool) -> None:
    pat = pattern_dataset(bits, SIZES, packed=packed)
    before = pat.copy(deep=True)
    for metric in PATTERN_METRICS:
        metric(pat)
    xr.testing.assert_identical(pat, before)


def test_more_pattern_dataset_errors(bits: np.ndarray) -> None:
    pat = pattern_dataset(bits, SIZES)
    extra = pat.assign(pattern=pat["pattern"].expand_dims(seed=2))
    with pytest.raises(
        ValueError,
        match=r"The 'pat' parameter of coactivation_rate must be a pattern Dataset .* Got a DataArray with dims \('seed', 'model', 'sample', 'unit'\) instead\.",
    ):
        metrics.coactivation_rate(extra)
    moved = pat.drop_vars("layer").assign_coords(layer=("sample", ["a"] * 30))
    with pytest.raises(
        ValueError, match=r"The 'pat' parameter of activation_rate must be a pattern Dataset"
    ):
        metrics.activation_rate(moved)
    x = line(9)
    single = pattern_dataset(by_hand(KINKS, x), [6], names=["1"])
    with pytest.raises(
        ValueError,
        match=r"The 'inputs' parameter of linear_regions must be the path's inputs: a DataArray with a 'sample' dim matching pat",
    ):
        metrics.linear_regions(
            single,
            model=kink_net(KINKS),
            inputs=x.assign_coords(sample=np.arange(9) + 100),
            refine=True,
        )
