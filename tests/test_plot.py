"""Tests of shatterkit.plot: what is drawn (line data, images, labels, legends), not pixels.

Inputs are built by hand following docs/schema.md, so these tests do not depend on the probes or
the metrics.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb

from shatterkit import plot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def ax():
    return plt.figure().add_subplot()


@pytest.fixture
def grad_ds(rng) -> xr.Dataset:
    """An ensemble gradient Dataset on a 1-D line: 3 models × 16 samples × 1 feature, 1 layer."""
    t = np.linspace(-2, 2, 16)
    grad = xr.DataArray(
        rng.standard_normal((3, 16, 1)),
        dims=("model", "sample", "feature"),
        attrs={"long_name": "input gradient", "units": "1/unit", "layer": "input", "depth": 0},
    )
    hidden = xr.DataArray(
        rng.standard_normal((3, 16, 4)),
        dims=("model", "sample", "fc1:feature"),
        attrs={"long_name": "gradient w.r.t. fc1", "layer": "fc1", "depth": 1},
    )
    coords = {
        "model": [0, 1, 2],
        "sample": np.arange(16),
        "t": ("sample", t, {"long_name": "path parameter"}),
    }
    return xr.Dataset({"gradient": grad, "gradient:fc1": hidden}, coords=coords)


@pytest.fixture
def pattern_ds() -> xr.Dataset:
    """Bool patterns of 2 models × 5 samples × 11 units in three layers."""
    rng = np.random.default_rng(5)
    layers = ["0.relu"] * 4 + ["1.relu"] * 4 + ["1.relu#1"] * 3
    return xr.Dataset(
        {"pattern": (("model", "sample", "unit"), rng.random((2, 5, 11)) > 0.5)},
        coords={
            "model": [0, 1],
            "sample": np.arange(5),
            "layer": ("unit", layers),
            "depth": ("unit", [1] * 4 + [2] * 4 + [3] * 3),
        },
    )


def _depth_series(values, name, **extra_dims) -> xr.DataArray:
    """A metric over ``layer`` with ``depth`` coord (plus optional leading dims)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    dims = (*extra_dims, "layer")
    coords = {
        "layer": [f"{i}.relu" for i in range(n)],
        "depth": ("layer", np.arange(1, n + 1)),
        **extra_dims,
    }
    return xr.DataArray(values, dims=dims, coords=coords, name=name)


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --- gradients ------------------------------------------------------------------------------


def test_gradients_one_line_per_model(grad_ds, ax):
    out = plot.gradients(grad_ds, ax=ax)
    assert out is ax
    assert len(ax.lines) == 3
    for model, line in enumerate(ax.lines):
        expected = np.column_stack([grad_ds.t, grad_ds.gradient[model, :, 0]])
        np.testing.assert_array_equal(line.get_xydata(), expected)
    assert _legend_texts(ax) == ["0", "1", "2"]
    assert ax.get_legend().get_title().get_text() == "model"
    assert ax.get_xlabel() == "path parameter"
    assert ax.get_ylabel() == "input gradient [1/unit]"


def test_gradients_draws_on_current_axes_by_default(grad_ds):
    ax = plt.figure().add_subplot()
    assert plot.gradients(grad_ds) is ax


def test_gradients_without_t_or_model_uses_sample_index(grad_ds, ax):
    ds = grad_ds.drop_vars("t").isel(model=1, drop=True)
    plot.gradients(ds, ax=ax, color="red", lw=3)
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), np.arange(16))
    np.testing.assert_array_equal(line.get_ydata(), ds.gradient[:, 0])
    assert ax.get_xlabel() == "sample"
    assert ax.get_legend() is None
    assert line.get_color() == "red" and line.get_linewidth() == 3


def test_gradients_of_a_layer_and_feature(grad_ds, ax):
    plot.gradients(grad_ds, layer="fc1", feature=2, x="sample", palette=["k", "r", "b"], ax=ax)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), grad_ds["gradient:fc1"][1, :, 2])
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), np.arange(16))
    assert to_rgb(ax.lines[2].get_color()) == to_rgb("b")
    assert ax.get_ylabel() == "gradient w.r.t. fc1"


def test_gradients_of_images_index_the_flat_components(rng, ax):
    grad = xr.DataArray(
        rng.standard_normal((6, 2, 3, 4)), dims=("sample", "channel", "height", "width")
    )
    plot.gradients(xr.Dataset({"gradient": grad}), feature=13, ax=ax)
    # C order: 13 = channel 1, height 0, width 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), grad[:, 1, 0, 1])


def test_gradients_of_noise_without_feature_dim(rng, ax):
    ds = xr.Dataset({"gradient": ("sample", rng.standard_normal(10).cumsum())})
    plot.gradients(ds, ax=ax)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), ds.gradient)
    assert ax.get_ylabel() == "gradient"


def test_gradients_errors(grad_ds, ax):
    with pytest.raises(KeyError, match=r"Got 'fc2' instead; close matches: 'fc1'"):
        plot.gradients(grad_ds, layer="fc2", ax=ax)
    with pytest.raises(IndexError, match=r"index into the 4 components .* Got 4 instead"):
        plot.gradients(grad_ds, layer="fc1", feature=4, ax=ax)
    with pytest.raises(
        ValueError,
        match=r"'hue' parameter of gradients must be one of the dims \('model',\)\. Got 'sample'",
    ):
        plot.gradients(grad_ds, hue="sample", ax=ax)


# --- covariance -----------------------------------------------------------------------------


@pytest.fixture
def corr(rng) -> xr.DataArray:
    a = rng.standard_normal((8, 8))
    return xr.DataArray(
        a + a.T,
        dims=("sample", "sample_other"),
        name="gradient_correlation",
        attrs={"long_name": "gradient correlation"},
    )


def test_covariance_image_and_colorbar(corr, ax):
    assert plot.covariance(corr, ax=ax) is ax
    (image,) = ax.images
    np.testing.assert_array_equal(image.get_array(), corr.values)
    vmax = np.abs(corr.values).max()
    assert image.get_clim() == (-vmax, vmax)
    assert image.get_cmap().name == "RdBu_r"
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("sample", "sample_other")
    colorbar = ax.figure.axes[1]
    assert colorbar.get_ylabel() == "gradient correlation"


def test_covariance_options_and_dataset_input(corr, ax):
    ds = xr.Dataset({"gradient_correlation": corr.transpose()})
    plot.covariance(ds, vmax=2.0, cbar=False, cmap="viridis", ax=ax)
    np.testing.assert_array_equal(ax.images[0].get_array(), corr.values)
    assert ax.images[0].get_clim() == (-2.0, 2.0)
    assert ax.images[0].get_cmap().name == "viridis"
    assert len(ax.figure.axes) == 1


def test_covariance_cbar_kws_are_not_modified(corr, ax):
    kws = {"label": "rho"}
    plot.covariance(corr, cbar_kws=kws, ax=ax)
    assert ax.figure.axes[1].get_ylabel() == "rho"
    assert kws == {"label": "rho"}


def test_covariance_errors(corr, ax):
    with pytest.raises(ValueError, match=r"Got dims \('layer', 'sample', 'sample_other'\)"):
        plot.covariance(xr.concat([corr, corr], "layer"), ax=ax)
    with pytest.raises(KeyError, match="'gradient_correlation' or 'gradient_covariance'"):
        plot.covariance(xr.Dataset({"other": corr}), ax=ax)


# --- autocorrelation ------------------------------------------------------------------------


@pytest.fixture
def acf() -> xr.DataArray:
    lag = np.arange(6)
    return xr.DataArray(
        [0.9**lag, 0.5**lag, 0.1**lag],
        dims=("depth", "lag"),
        coords={"depth": [1, 4, 16], "lag": lag},
        name="autocorrelation",
        attrs={"long_name": "gradient autocorrelation"},
    )


def test_autocorrelation_hue_from_extra_dim(acf, ax):
    assert plot.autocorrelation(acf, ax=ax) is ax
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[1].get_xydata(), np.column_stack([acf.lag, acf[1]]))
    assert _legend_texts(ax) == ["1", "4", "16"]
    assert ax.get_legend().get_title().get_text() == "depth"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lag", "gradient autocorrelation")


def test_autocorrelation_dict_and_references(acf, ax):
    brown = acf.isel(depth=0, drop=True)
    white = xr.DataArray(1.0 * (acf.lag == 0), coords={"lag": acf.lag})
    data = {"plain": acf.isel(depth=2, drop=True), "resnet": acf.isel(depth=1, drop=True)}
    plot.autocorrelation(data, reference={"brown": brown, "white": white}, ax=ax)
    assert _legend_texts(ax) == ["plain", "resnet", "brown", "white"]
    reference = ax.lines[2]
    assert reference.get_linestyle() == "--"
    assert to_rgb(reference.get_color()) == to_rgb("saddlebrown")
    np.testing.assert_array_equal(ax.lines[3].get_ydata(), white)
    assert ax.get_ylabel() == "gradient autocorrelation"  # from the data, not the references


def test_autocorrelation_explicit_hue_and_errors(acf, ax):
    with pytest.raises(
        ValueError, match=r"one line per series over 'lag'.*dims \('model', 'lag'\)"
    ):
        plot.autocorrelation(xr.concat([acf, acf], "model"), hue="depth", ax=ax)
    with pytest.raises(ValueError, match=r"Got the data with dims \('model', 'depth', 'lag'\)"):
        plot.autocorrelation(xr.concat([acf, acf], "model"), ax=ax)


# --- decay ----------------------------------------------------------------------------------


@pytest.fixture
def fit() -> xr.Dataset:
    depth = np.array([1, 2, 4, 8, 16])
    return xr.Dataset(
        {
            "measured": ("depth", 0.6**depth, {"long_name": "gradient correlation"}),
            "measured_std": ("depth", 0.05 * 0.6**depth),
            "exponential": ("depth", 0.6**depth),
            "power_law": ("depth", 0.6 / depth),
            "theory": ("depth", 0.5**depth),
            "exp_r": 0.6,
            "pow_alpha": 1.0,
        },
        coords={"depth": depth},
        attrs={"preferred": "power_law"},
    )


def test_decay_draws_points_fits_and_theory(fit, ax):
    assert plot.decay(fit, ax=ax) is ax
    assert ax.get_yscale() == "log"
    assert _legend_texts(ax) == [
        "exponential, r = 0.6",
        "power law, alpha = 1 (preferred)",
        "theory",
        "measured",
    ]
    exponential, power, theory = ax.lines[:3]
    np.testing.assert_array_equal(power.get_xydata(), np.column_stack([fit.depth, fit.power_law]))
    assert power.get_linestyle() == "-" and exponential.get_linestyle() == "--"
    np.testing.assert_array_equal(theory.get_ydata(), fit.theory)
    (errorbar,) = ax.containers
    np.testing.assert_array_equal(errorbar.lines[0].get_ydata(), fit.measured)
    (bars,) = errorbar.lines[2]
    half_heights = [(seg[1, 1] - seg[0, 1]) / 2 for seg in bars.get_segments()]
    np.testing.assert_allclose(half_heights, fit.measured_std, rtol=1e-12)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("depth", "gradient correlation")


def test_decay_without_optional_parts(fit, ax):
    plot.decay(fit.drop_vars(["theory", "exp_r", "pow_alpha", "measured_std"]), ax=ax)
    assert _legend_texts(ax) == ["exponential", "power law (preferred)", "measured"]


def test_decay_needs_its_variables(fit, ax):
    with pytest.raises(KeyError, match="decay needs a variable 'power_law'"):
        plot.decay(fit.drop_vars("power_law"), ax=ax)


# --- coactivation and dispersion --------------------------------------------------------------


def test_coactivation_against_depth_with_references(ax):
    rate = _depth_series([0.3, 0.27, 0.25], "coactivation")
    assert plot.coactivation(rate, ax=ax) is ax
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), [[1, 0.3], [2, 0.27], [3, 0.25]])
    assert [line.get_ydata()[0] for line in ax.lines[1:]] == [0.25, 0.5]
    assert _legend_texts(ax) == ["1/4: independent patterns", "1/2: units always on or off"]
    assert ax.get_xlabel() == "depth"


def test_coactivation_dict_without_references(ax):
    data = {
        "bn": _depth_series([0.3, 0.25], "coactivation"),
        "plain": _depth_series([0.4, 0.5], "coactivation"),
    }
    plot.coactivation(data, references=False, ax=ax)
    assert len(ax.lines) == 2
    assert _legend_texts(ax) == ["bn", "plain"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.4, 0.5])


def test_coactivation_rejects_two_extra_dims(ax):
    rate = _depth_series([[0.3, 0.2], [0.35, 0.3]], "coactivation", lag=[1, 2])
    with pytest.raises(ValueError, match=r"Got the data with dims \('model', 'lag', 'layer'\)"):
        plot.coactivation(xr.concat([rate, rate], "model"), ax=ax)


def test_coactivation_lag_as_hue(ax):
    rate = _depth_series([[0.3, 0.2], [0.35, 0.3]], "coactivation", lag=[1, 2])
    plot.coactivation(rate, references=False, ax=ax)
    assert _legend_texts(ax) == ["1", "2"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.35, 0.3])


def test_dispersion_hue_dim(ax):
    disp = _depth_series([[0.1, 0.2], [0.3, 0.4]], "dispersion", architecture=["a", "b"])
    plot.dispersion(disp, ax=ax)
    assert _legend_texts(ax) == ["a", "b"]
    assert ax.get_legend().get_title().get_text() == "architecture"
    np.testing.assert_array_equal(ax.lines[1].get_xydata(), [[1, 0.3], [2, 0.4]])
    assert ax.get_ylabel() == "dispersion"


# --- patterns -------------------------------------------------------------------------------


def test_patterns_raster_units_by_inputs(pattern_ds, ax):
    assert plot.patterns(pattern_ds, model=1, ax=ax) is ax
    np.testing.assert_array_equal(ax.images[0].get_array(), pattern_ds.pattern[1].values.T)
    # a line between consecutive layers
    assert [line.get_ydata()[0] for line in ax.lines] == [3.5, 7.5]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sample", "unit")


@pytest.mark.parametrize("layer", ["1.relu#1", 3])
def test_patterns_one_layer(pattern_ds, layer, ax):
    plot.patterns(pattern_ds, layer=layer, ax=ax)
    np.testing.assert_array_equal(ax.images[0].get_array(), pattern_ds.pattern[0, :, 8:].values.T)
    assert not ax.lines


def test_patterns_unpacks_packed_patterns(pattern_ds, ax):
    packed = pattern_ds.assign(
        pattern=(("model", "sample", "byte"), np.packbits(pattern_ds.pattern.values, axis=-1))
    )
    packed.pattern.attrs["packed"] = 1
    plot.patterns(packed, ax=ax)
    np.testing.assert_array_equal(ax.images[0].get_array(), pattern_ds.pattern[0].values.T)


def test_patterns_unknown_layer(pattern_ds, ax):
    with pytest.raises(KeyError, match=r"\('0.relu', '1.relu', '1.relu#1'\)\. Got '2.relu'"):
        plot.patterns(pattern_ds, layer="2.relu", ax=ax)


# --- profile --------------------------------------------------------------------------------


@pytest.fixture
def profile_ds() -> xr.Dataset:
    index = _depth_series([0.1, 0.5, 0.9], "shattering_index")
    index.attrs["long_name"] = "shattering index"
    std = _depth_series([0.01, 0.05, 0.1], "shattering_index_std")
    lag1 = _depth_series([0.9, 0.4, 0.0], "autocorrelation_lag1")
    return xr.Dataset({v.name: v for v in (index, std, lag1)})


def test_profile_with_std_band(profile_ds, ax):
    assert plot.profile(profile_ds, ax=ax) is ax
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), [[1, 0.1], [2, 0.5], [3, 0.9]])
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.09) and ys.max() == pytest.approx(1.0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("depth", "shattering index")
    assert ax.get_legend() is None


def test_profile_dict_and_other_variable(profile_ds, ax):
    other = profile_ds.assign(autocorrelation_lag1=profile_ds.autocorrelation_lag1 / 2)
    plot.profile({"plain": profile_ds, "resnet": other}, y="autocorrelation_lag1", ax=ax)
    assert _legend_texts(ax) == ["plain", "resnet"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.45, 0.2, 0.0])
    assert not ax.collections  # no autocorrelation_lag1_std: no band


def test_profile_missing_variable(profile_ds, ax):
    with pytest.raises(KeyError, match=r"profile needs a variable 'dispersion'\. Got a Dataset"):
        plot.profile(profile_ds, y="dispersion", ax=ax)


# --- figure1 --------------------------------------------------------------------------------


def test_figure1_layout(grad_ds, corr):
    panels = {"net": grad_ds, "white": grad_ds.isel(model=0, drop=True)}
    fig = plot.figure1(panels, {"net": corr, "white": corr / 2})
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in top] == ["net", "white"]
    # first model only, against the grid index
    (line,) = top[0].lines
    np.testing.assert_array_equal(line.get_xdata(), np.arange(16))
    np.testing.assert_array_equal(line.get_ydata(), grad_ds.gradient[0, :, 0])
    np.testing.assert_array_equal(bottom[1].images[0].get_array(), corr.values / 2)


def test_figure1_needs_matching_keys(grad_ds, corr):
    with pytest.raises(ValueError, match=r"Got panels \['a'\] and covariances \['b'\]"):
        plot.figure1({"a": grad_ds}, {"b": corr})


def test_gradients_hue_over_a_concatenated_dim_draws_one_line_each():
    import matplotlib.pyplot as plt
    import numpy as np
    import xarray as xr

    from shatterkit import plot

    grad = xr.DataArray(
        np.random.default_rng(0).normal(size=(5, 2, 1)),
        dims=("sample", "training", "feature"),
        coords={"training": ["untrained", "trained"]},
    )
    _, ax = plt.subplots()
    plot.gradients(xr.Dataset({"gradient": grad}), hue="training", ax=ax)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), grad.sel(training="trained").values.ravel())
