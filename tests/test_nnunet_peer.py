"""benchmarks/nnunet_peer.py's own parts (nnU-Net itself is not installed here: the benchmark runs it with
``--nnunet-python``): the plans that feed the bundle's network what it was trained on, and the RAS adapter."""

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.benchmark_modules import load_benchmark

peer = load_benchmark("nnunet_peer")


class _AlongX(torch.nn.Module):
    """Logits that depend on where a voxel lies along the patch's first axis (not flip-invariant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
        return x + ramp


def test_the_adapter_runs_the_network_in_ras_and_answers_in_the_images_axes():
    x = torch.rand(1, 1, 4, 3, 2)
    adapter = peer.RasAdapter(_AlongX(), flips=[0])
    expected = torch.flip(_AlongX()(torch.flip(x, [2])), [2])
    assert torch.equal(adapter(x), expected)
    assert not torch.equal(adapter(x), _AlongX()(x))
    assert torch.equal(peer.RasAdapter(_AlongX(), flips=[])(x), _AlongX()(x))


@pytest.mark.parametrize(
    "diagonal, flips", [((3.0, 3.0, 3.0), []), ((-3.0, 3.0, 3.0), [0]), ((-1.0, -1.0, 2.0), [0, 1])]
)
def test_the_axes_to_flip_are_read_from_the_files_direction(tmp_path, diagonal, flips):
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.diag([*diagonal, 1.0])), str(path))
    assert peer.ras_flips(str(path)) == flips


def test_an_oblique_or_permuted_image_is_refused_by_name(tmp_path):
    path = tmp_path / "permuted.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)[[1, 0, 2, 3]]), str(path))
    with pytest.raises(SystemExit, match="permuted.nii.gz: direction .* is not axis-aligned"):
        peer.ras_flips(str(path))


def test_the_plans_normalise_ct_to_the_bundles_window_at_its_patch_and_spacing():
    plans = peer.plans([2.4, 2.4, 5.0], [96, 96, 32], [-175.0, 250.0], [512, 512, 600])
    configuration = plans["configurations"]["3d_fullres"]
    assert configuration["patch_size"] == [96, 96, 32] and configuration["spacing"] == [2.4, 2.4, 5.0]
    assert plans["transpose_forward"] == plans["transpose_backward"] == [2, 1, 0]
    stats = plans["foreground_intensity_properties_per_channel"]["0"]
    hu = np.array([-1000.0, -175.0, 37.5, 250.0, 1200.0])
    # nnU-Net's CTNormalization: clip to the percentiles, subtract the mean, divide by the std
    normalised = (np.clip(hu, stats["percentile_00_5"], stats["percentile_99_5"]) - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(normalised, [0.0, 0.0, 0.5, 1.0, 1.0])  # ScaleIntensityRanged's [0, 1] with clip
