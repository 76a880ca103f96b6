"""Tests of RandFilmBorder(d): a radiograph shrunk onto a uniform border, its mask with it."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from transforms import RandFilmBorder, RandFilmBorderd


def _radiograph() -> torch.Tensor:
    """A (1, 40, 30) image: grey levels 1..2 everywhere, a brighter square in the middle."""
    img = torch.linspace(1.0, 2.0, 40 * 30).reshape(1, 40, 30)
    img[:, 15:25, 10:20] = 3.0
    return img


def _content_box(values: np.ndarray, fill: float) -> tuple[slice, slice]:
    inside = np.argwhere(values != fill)
    (x0, y0), (x1, y1) = inside.min(axis=0), inside.max(axis=0) + 1
    return slice(x0, x1), slice(y0, y1)


def test_the_radiograph_is_shrunk_onto_a_border_of_its_darkest_grey_level():
    img = _radiograph()
    out = RandFilmBorder(prob=1.0, scale_range=(0.5, 0.8), bright_prob=0.0).set_random_state(3)(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    rows, cols = _content_box(out[0].numpy(), 1.0)
    assert 20 <= rows.stop - rows.start <= 32 and 15 <= cols.stop - cols.start <= 24  # each axis its own factor
    border = np.ones(out[0].shape, bool)
    border[rows, cols] = False
    assert border.any() and np.all(out[0].numpy()[border] == 1.0)  # the darkest grey level
    assert out.max() == pytest.approx(3.0)  # the content is kept, only smaller


def test_a_bright_border_takes_the_brightest_grey_level():
    out = RandFilmBorder(prob=1.0, scale_range=(0.5, 0.5), bright_prob=1.0).set_random_state(0)(_radiograph())
    assert (out[0] == 3.0).sum() > 0.5 * 40 * 30  # three quarters of the canvas is border


def test_prob_zero_returns_the_input_unchanged_and_bad_arguments_are_refused():
    img = _radiograph()
    assert RandFilmBorder(prob=0.0)(img) is img
    with pytest.raises(ValueError, match="scale_range"):
        RandFilmBorder(scale_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"channel-first 2D image \(C, W, H\), got shape \(40, 30\)"):
        RandFilmBorder(prob=1.0)(img[0])


def test_the_mask_moves_with_the_radiograph_and_is_background_on_the_border():
    img = MetaTensor(_radiograph(), affine=torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0])))
    mask = (img == 3.0).to(torch.uint8)
    out = RandFilmBorderd(["image", "label"], prob=1.0, scale_range=(0.6, 0.6), bright_prob=0.0).set_random_state(1)(
        {"image": img, "label": mask, "other": 5}
    )
    assert out["other"] == 5
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, img.affine)
    assert out["label"].dtype == torch.uint8 and set(out["label"].unique().tolist()) == {0, 1}
    # the mask covers the shrunk bright square and nothing else
    np.testing.assert_array_equal(out["label"][0].numpy() == 1, np.isclose(out["image"][0].numpy(), 3.0))
    assert 0 < out["label"].sum() < mask.sum()


def test_one_draw_for_every_key_and_numpy_in_numpy_out():
    img = _radiograph().numpy()
    twin = RandFilmBorderd(["a", "b"], prob=1.0, mode="area", fill="film").set_random_state(7)
    out = twin({"a": img, "b": img.copy()})
    assert isinstance(out["a"], np.ndarray) and np.array_equal(out["a"], out["b"])
    with pytest.raises(ValueError, match="differ in spatial shape"):
        twin({"a": img, "b": img[:, :20]})
    assert RandFilmBorderd(["image", "label"], prob=1.0, allow_missing_keys=True)({"image": img})["image"].shape == (
        1,
        40,
        30,
    )
