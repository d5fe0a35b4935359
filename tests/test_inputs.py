"""Input set builders against hand-computed points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from shatterkit import inputs


def test_line_is_the_papers_grid():
    x = inputs.line()
    assert x.dims == ("sample", "feature") and x.shape == (256, 1)
    np.testing.assert_allclose(x.values.ravel(), np.linspace(-2, 2, 256))
    np.testing.assert_allclose(x["t"].values, x.values.ravel())


def test_segment_between_images_keeps_image_dims():
    a, b = torch.zeros(3, 4, 5), torch.ones(3, 4, 5)
    path = inputs.segment(a, b, n=5)
    assert path.dims == ("sample", "channel", "height", "width")
    np.testing.assert_allclose(path.isel(sample=2).values, 0.5)
    np.testing.assert_allclose(path["t"].values, [0, 0.25, 0.5, 0.75, 1])


def test_ray_is_centred_on_x_with_unit_direction():
    x = np.array([1.0, -2.0, 0.5])
    r = inputs.ray(x, radius=3.0, n=7, seed=0)
    np.testing.assert_allclose(r.isel(sample=3).values, x)
    step = r.isel(sample=1).values - r.isel(sample=0).values
    np.testing.assert_allclose(np.linalg.norm(step), 1.0)
    xr.testing.assert_identical(r, inputs.ray(x, radius=3.0, n=7, seed=0))


def test_neighbourhood_spread_and_seed():
    cloud = inputs.neighbourhood(np.zeros(50), radius=0.2, n=400, seed=1)
    assert "t" not in cloud.coords
    assert abs(cloud.values.std() - 0.2) < 0.01
    assert not np.array_equal(
        cloud.values, inputs.neighbourhood(np.zeros(50), 0.2, 400, seed=2).values
    )


def test_dataarray_dims_and_coords_are_kept():
    img = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"), coords={"x": [10, 20, 30]})
    path = inputs.segment(img, img + 1, n=3)
    assert path.dims == ("sample", "y", "x")
    assert path["x"].values.tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: inputs.line(n=1),
            ValueError,
            r"The 'n' parameter of line must be an int >= 2. Got 1",
        ),
        (lambda: inputs.line(n=2.5), TypeError, r"The 'n' parameter of line must be an int"),
        (lambda: inputs.segment([0, 0], [1, 1, 1]), ValueError, r"must have the shape of 'a'"),
        (lambda: inputs.ray([0, 0], direction=[0, 0]), ValueError, r"finite non-zero"),
        (lambda: inputs.ray([0, 0], direction=[1, 0, 0]), ValueError, r"shape of 'x'"),
        (lambda: inputs.segment("ab", "cd"), TypeError, r"real array-like"),
    ],
)
def test_bad_arguments_say_what_was_expected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_points_selected_from_a_set_drop_their_scalar_sample_coord():
    imgs = xr.DataArray(np.zeros((2, 3)), dims=("sample", "feature"), coords={"sample": [0, 1]})
    path = inputs.segment(imgs.isel(sample=0), imgs.isel(sample=1), n=3)
    assert path.dims == ("sample", "feature") and path["sample"].values.tolist() == [0, 1, 2]
