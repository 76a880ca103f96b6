"""nnU-Net v2's predictor around this project's network: the peer ``benchmarks/whole_scan.py --nnunet-python``
runs in a fresh process of a Python that has ``nnunetv2`` (this project's environment does not install it).

nnU-Net's own pipeline runs as its users run it (``nnUNetPredictor.predict_from_files``: SimpleITK read, crop to
the non-zero region, resampling to the configuration's spacing with its third-order spline in-plane, CT
normalisation, Gaussian-weighted sliding window, resampling back, export), with the *same network and weights*
as ours: the bundle's U-Net, exported to TorchScript by the parent, given to the predictor with
``manual_initialization`` instead of a PlainConvUNet built from plans. The plans are written so that nnU-Net
feeds it what it was trained on: patches of the bundle's ``roi_size`` at its ``pixdim``, and CT normalisation
that clips to the bundle's HU window and maps it to [0, 1] (mean = the window's floor, std = its width). nnU-Net
works in the image's voxel axes as SimpleITK reads them; the network was trained in RAS, so a thin wrapper flips
the patch's axes to RAS and the logits back. Mirroring is off (ours runs one pass), the tile step is 1 - the
bundle's overlap.

    <python with nnunetv2> benchmarks/nnunet_peer.py --network network.ts --input ct.nii.gz --output seg.nii.gz \\
        --pixdim 2.4 2.4 5.0 --roi-size 96 96 32 --hu-window -175 250 --num-classes 3 --overlap 0.25

Prints one JSON line: ``{"seconds": ..., "output": ...}`` (the prediction's time, start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk
import torch


class RasAdapter(torch.nn.Module):
    """The network, fed and answered in the image's voxel axes: each patch is flipped to RAS before it and its
    logits flipped back after (``flips``: the spatial axes, 0-based, whose index runs against RAS)."""

    def __init__(self, network: torch.nn.Module, flips: list[int]):
        super().__init__()
        self.network = network
        self.dims = [axis + 2 for axis in flips]  # batch and channel first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims:
            x = torch.flip(x, self.dims)
        y = self.network(x)
        return torch.flip(y, self.dims) if self.dims else y


def _header(image_path: str) -> sitk.ImageFileReader:
    """A reader of ``image_path`` with its header read (size, direction), none of its voxels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(image_path)
    reader.ReadImageInformation()
    return reader


def ras_flips(image_path: str) -> list[int]:
    """The voxel axes (ITK order x, y, z) whose index runs against RAS; the image must be axis-aligned and in its
    axes' order (nnU-Net's spacing and patch are given in that order)."""
    # ITK's direction is in LPS; RAS negates its first two rows
    direction = np.array(_header(image_path).GetDirection()).reshape(3, 3) * np.array([-1.0, -1.0, 1.0])[:, None]
    if not np.allclose(np.abs(direction), np.eye(3), atol=1e-3):
        sys.exit(f"{image_path}: direction {direction.round(3).tolist()} is not axis-aligned in x, y, z order")
    return [axis for axis in range(3) if direction[axis, axis] < 0]


def plans(pixdim: list[float], roi: list[int], hu_window: list[float], shape: list[int]) -> dict:
    """nnU-Net plans with one 3d_fullres configuration that feeds the bundle's network what it was trained on."""
    low, high = hu_window
    configuration = {
        "data_identifier": "peer_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(roi),
        "median_image_size_in_voxels": list(shape),
        "spacing": list(pixdim),
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "given to manual_initialization", "arch_kwargs": {"strides": []},
                         "_kw_requires_import": []},
        "batch_dice": False,
    }  # fmt: skip
    return {
        "dataset_name": "Dataset999_Peer",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(pixdim),
        "original_median_shape_after_transp": list(shape),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [2, 1, 0],  # SimpleITK's (z, y, x) array -> (x, y, z), the bundle's axis order
        "transpose_backward": [2, 1, 0],
        "configurations": {"3d_fullres": configuration},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": high, "min": low, "mean": low, "median": (low + high) / 2, "std": high - low,
                  "percentile_00_5": low, "percentile_99_5": high}
        },
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True, help="TorchScript file of the bundle's network with its weights")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="the segmentation to write (.nii.gz)")
    parser.add_argument("--pixdim", type=float, nargs=3, required=True)
    parser.add_argument("--roi-size", type=int, nargs=3, required=True)
    parser.add_argument("--hu-window", type=float, nargs=2, required=True)
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--overlap", type=float, default=0.25)
    args = parser.parse_args(argv)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # nnU-Net warns without them; unused here
        os.environ.setdefault(name, tempfile.gettempdir())

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    image_shape = list(_header(args.input).GetSize())  # x, y, z, from the header: the predictor reads the voxels
    manager = PlansManager(plans(args.pixdim, args.roi_size, args.hu_window, image_shape))
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{f"class_{c}": c for c in range(1, args.num_classes)}},
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }
    network = RasAdapter(torch.jit.load(args.network, map_location="cpu").eval(), ras_flips(args.input))
    predictor = nnUNetPredictor(
        tile_step_size=1.0 - args.overlap,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        manager,
        manager.get_configuration("3d_fullres"),
        [network.state_dict()],
        dataset,
        "nnUNetTrainer",
        None,
    )  # one "fold": our weights
    output = args.output.removesuffix(".nii.gz")
    start = time.perf_counter()
    predictor.predict_from_files(
        [[args.input]], [output], save_probabilities=False, overwrite=True,
        num_processes_preprocessing=1, num_processes_segmentation_export=1,
    )  # fmt: skip
    print(json.dumps({"seconds": time.perf_counter() - start, "output": output + ".nii.gz"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
