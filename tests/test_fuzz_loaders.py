"""A bounded fuzz run of the image loaders: mutated NIfTI / NRRD / MetaImage files give a clear error, never a crash.

Each example corrupts a few bytes of a small valid file (and maybe truncates it), then reads it with the
project's check (:func:`pipelines.validation.volume_checks.check_volume`) and with the inference loading chain
(``LoadImaged`` and
``CheckVolumed`` inside :class:`pipelines.inference.robust_inference.GuardedDataset`). Either the file is usable, or the
outcome is a problem / error that names the file. A watchdog ends the process if anything hangs.

Run it alone with ``pytest -m fuzz``; ``FUZZ_EXAMPLES=500`` runs longer.
"""

import faulthandler
import gzip
import os
import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monai.transforms import Compose, LoadImaged

from pipelines.inference.robust_inference import FAILED_KEY, SOURCE_KEY, GuardedDataset
from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_volume
from transforms import CheckVolumed

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
SECONDS_PER_EXAMPLE = 20  # one read of a ~2 kB file; far more means a hang
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # CI: the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
KINDS = (".nii", ".nii.gz", ".nrrd", ".mha")


def _seed_bytes(kind: str, folder) -> bytes:
    """A small valid 3D CT-like volume in format ``kind`` (uncompressed bytes for ``.nii.gz``)."""
    data = (np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7 - 200).astype(np.int16)
    path = folder / f"seed{kind}"
    if kind.startswith(".nii"):
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        affine[:3, 3] = (-20, 30, -100)
        nib.save(nib.Nifti1Image(data, affine), folder / "seed.nii")
        return (folder / "seed.nii").read_bytes()
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0))
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-20.0, 30.0, -100.0))
    sitk.WriteImage(image, str(path), useCompression=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    return {kind: _seed_bytes(kind, folder) for kind in KINDS}


@pytest.fixture(scope="module", autouse=True)
def watchdog():
    """End the whole process, with every thread's traceback, if the fuzz run hangs in C code."""
    faulthandler.dump_traceback_later(SECONDS_PER_EXAMPLE * EXAMPLES * 4 + 120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


mutations = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        # (position as a fraction of the file, new byte); positions in the header are the interesting ones
        "edits": st.lists(
            st.tuples(st.one_of(st.floats(0.0, 0.25), st.floats(0.0, 1.0, exclude_max=True)), st.integers(0, 255)),
            min_size=1,
            max_size=8,
        ),
        "truncate": st.one_of(st.none(), st.floats(0.0, 1.0)),
        "raw_gzip": st.booleans(),  # .nii.gz: corrupt the compressed stream instead of its content
    }
)


def _write_mutant(folder, seeds, m) -> str:
    kind = m["kind"]
    data = bytearray(seeds[kind])
    if kind == ".nii.gz" and m["raw_gzip"]:
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    for where, value in m["edits"]:
        data[int(where * len(data))] = value
    if m["truncate"] is not None:
        data = data[: int(m["truncate"] * len(data))]
    if kind == ".nii.gz" and not m["raw_gzip"]:
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    path = folder / f"mutant{kind}"
    path.write_bytes(bytes(data))
    return str(path)


@FUZZ
@given(m=mutations)
def test_check_volume_reports_or_raises_naming_the_file(tmp_path, seeds, m):
    path = _write_mutant(tmp_path, seeds, m)
    start = time.monotonic()
    try:
        problems = check_volume(path)
    except (DataError, ValueError) as err:
        assert path in str(err), err
    else:
        assert all(p.startswith(path) for p in problems), problems
    assert time.monotonic() - start < SECONDS_PER_EXAMPLE


@FUZZ
@given(m=mutations)
def test_loading_chain_loads_or_marks_the_case(tmp_path, seeds, m):
    path = _write_mutant(tmp_path, seeds, m)
    load = Compose(
        [
            LoadImaged("image", image_only=True, ensure_channel_first=True),
            CheckVolumed("image", spatial_dims=3),
        ]
    )
    start = time.monotonic()
    item = GuardedDataset([{"image": path}], load)[0]
    if FAILED_KEY in item:
        assert item[SOURCE_KEY] == path and item[FAILED_KEY].strip()
    else:
        assert item["image"].ndim == 4 and np.isfinite(np.asarray(item["image"])).all()
    assert time.monotonic() - start < SECONDS_PER_EXAMPLE
