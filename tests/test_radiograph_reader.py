"""Tests of pipelines.xray.radiograph_reader: PNG/JPEG/TIFF of any depth and DICOM CR/DX radiographs as one grey
channel, what is refused, and the chest X-ray configs' letterbox resizing undone by Invertd."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from pipelines.validation.errors import DataError
from pipelines.workflows import get_workflow
from pipelines.xray.radiograph_reader import RadiographReader, is_dicom_file, is_radiograph_file, read_radiograph
from pipelines.xray.radiographs import check_radiograph, list_xray_inputs
from tests.radiograph_files import radiograph_pixels, write_png, write_radiograph_dicom

FULL_WINDOW_12_BIT = {"WindowCenter": 2048, "WindowWidth": 4096}  # the identity on 0..4095 (PS3.3 C.11.2.1.2.1)


def _problem(path, **kwargs) -> str:
    with pytest.raises(DataError) as error:
        read_radiograph(path, **kwargs)
    (problem,) = error.value.problems
    assert problem.startswith(f"{path}: ") and "\n" not in problem
    return problem


# --------------------------------------------------------------------------------------------- PNG, JPEG, TIFF


def test_png_reads_as_pil_reader_does(tmp_path):
    pixels = radiograph_pixels(bits=8)  # 30 rows, 40 columns
    path = write_png(tmp_path / "grey.png", pixels)
    grey, meta = read_radiograph(path)
    assert grey.dtype == np.float32 and np.array_equal(grey, pixels)
    assert meta["format"] == "PNG" and meta["bits_used"] == 8 and meta["spacing"] == (1.0, 1.0)
    ours = LoadImaged("image", reader=RadiographReader(), image_only=True, ensure_channel_first=True)
    pil = LoadImaged("image", reader="PILReader", image_only=True, ensure_channel_first=True)
    a, b = ours({"image": str(path)})["image"], pil({"image": str(path)})["image"]
    assert a.shape == b.shape == (1, 40, 30)  # channel, width, height
    torch.testing.assert_close(a, b.float())
    assert a.meta["width"] == 40 and a.meta["height"] == 30 and a.meta["filename_or_obj"] == str(path)


def test_16_bit_png_keeps_its_depth_and_8_bit_content_is_not_stretched(tmp_path):
    pixels = radiograph_pixels(bits=16)
    path = write_png(tmp_path / "deep.png", pixels)
    assert Image.open(path).mode == "I;16"
    grey, meta = read_radiograph(path)
    assert np.array_equal(grey, pixels) and grey.max() == 65535 and meta["bits_used"] == 16
    # 12-bit detector data and 8-bit content in a 16-bit container: read as stored, never rescaled here
    for bits in (12, 8):
        small = radiograph_pixels(bits=bits).astype(np.uint16)
        grey, meta = read_radiograph(write_png(tmp_path / f"in16_{bits}.png", small))
        assert np.array_equal(grey, small) and meta["bits_used"] == bits


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_grey_radiograph_saved_in_colour_modes_is_read_as_grey(tmp_path, mode):
    pixels = radiograph_pixels(bits=8)
    grey, _ = read_radiograph(write_png(tmp_path / f"grey_{mode}.png", pixels, mode=mode))
    np.testing.assert_allclose(grey, pixels, atol=1.0)


def test_grey_jpeg_in_rgb_and_a_coloured_marker_are_grey_but_a_photograph_is_refused(tmp_path):
    pixels = radiograph_pixels(bits=8)
    jpeg = tmp_path / "grey_rgb.jpg"
    Image.fromarray(pixels).convert("RGB").save(jpeg, quality=80)  # chroma noise of JPEG
    grey, meta = read_radiograph(jpeg)
    assert meta["format"] == "JPEG" and np.abs(grey - pixels).mean() < 3
    marked = np.repeat(pixels[..., None], 3, axis=-1)
    marked[0:2, 0:10] = (255, 0, 0)  # a red "R" marker: 20 of 1200 pixels
    read_radiograph(write_png(tmp_path / "marker.png", marked))
    photo = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    problem = _problem(write_png(tmp_path / "photo.png", photo))
    assert "a colour image" in problem and "not a grey radiograph" in problem
    assert read_radiograph(tmp_path / "photo.png", is_mask=True)[0].shape == (30, 40)  # a colour mask is folded


def test_tiff_of_16_bit_and_float_and_multipage_tiff(tmp_path):
    pixels = radiograph_pixels(bits=16)
    Image.fromarray(pixels).save(tmp_path / "deep.tif")
    grey, meta = read_radiograph(tmp_path / "deep.tif")
    assert meta["format"] == "TIFF" and np.array_equal(grey, pixels)
    floats = pixels.astype(np.float32) / 7.0
    Image.fromarray(floats).save(tmp_path / "float.tiff")
    np.testing.assert_allclose(read_radiograph(tmp_path / "float.tiff")[0], floats)
    pages = [Image.fromarray(pixels), Image.fromarray(pixels)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert "holds 2 images" in _problem(tmp_path / "pages.tif")


def test_blank_nan_and_unreadable_images_are_refused(tmp_path):
    blank = write_png(tmp_path / "blank.png", np.full((5, 6), 7, np.uint8))
    assert "image is blank (every pixel is 7)" in _problem(blank)
    read_radiograph(tmp_path / "blank.png", is_mask=True)  # an empty mask is a mask
    nan = np.ones((5, 6), np.float32)
    nan[1, 2] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    assert "1 NaN or infinite pixel(s)" in _problem(tmp_path / "nan.tif")
    (tmp_path / "text.png").write_text("not an image")
    assert "cannot be read as an image" in _problem(tmp_path / "text.png")
    assert _problem(tmp_path / "missing.png").endswith("file not found")


# ------------------------------------------------------------------------------------------------------ DICOM


def test_dicom_rescale_and_window_centre_width(tmp_path):
    stored = radiograph_pixels(bits=12)
    path = write_radiograph_dicom(
        tmp_path / "cr.dcm", stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=2000, WindowWidth=1001
    )
    grey, meta = read_radiograph(path)
    assert grey.shape == (30, 40) and meta["modality"] == "CR" and meta["mode"] == "MONOCHROME2"
    rescaled = stored * 2.0 - 100  # the window [1500, 2500] of the rescaled values, onto 2 * 0..4095 - 100
    low, high = -100, 2 * 4095 - 100
    expected = np.clip((rescaled - 1999.5) / 1000 + 0.5, 0, 1) * (high - low) + low
    np.testing.assert_allclose(grey, expected, rtol=1e-5)


def test_dicom_voi_lut_sequence_wins_over_the_window(tmp_path):
    stored = radiograph_pixels(bits=12)
    voi = Dataset()
    voi.LUTDescriptor = [4096, 0, 16]
    lut = np.round(np.sqrt(np.arange(4096) / 4095) * 65535).astype(np.uint16)
    voi.add_new("LUTData", "US", lut.tolist())
    path = write_radiograph_dicom(tmp_path / "voi.dcm", stored, VOILUTSequence=[voi], WindowCenter=10, WindowWidth=2)
    grey, _ = read_radiograph(path)
    np.testing.assert_array_equal(grey, lut[stored])


def test_monochrome1_is_inverted_to_look_like_monochrome2(tmp_path):
    stored = radiograph_pixels(bits=12)
    m2, _ = read_radiograph(write_radiograph_dicom(tmp_path / "m2.dcm", stored, **FULL_WINDOW_12_BIT))
    m1, meta = read_radiograph(
        write_radiograph_dicom(tmp_path / "m1.dcm", 4095 - stored, photometric="MONOCHROME1", **FULL_WINDOW_12_BIT)
    )
    assert meta["mode"] == "MONOCHROME1"
    difference = m1 - m2  # the same image up to an offset: inverted within its own range
    np.testing.assert_allclose(difference, difference.flat[0])
    assert m1[5, 5] == m1.max()  # the bright block stays bright
    inverse = write_radiograph_dicom(tmp_path / "inverse.dcm", 4095 - stored, PresentationLUTShape="INVERSE")
    np.testing.assert_allclose(read_radiograph(inverse)[0] - m2, difference.flat[0])


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [
        ({"PixelSpacing": [0.2, 0.15], "ImagerPixelSpacing": [0.3, 0.3]}, ((0.15, 0.2), "PixelSpacing")),
        ({"ImagerPixelSpacing": [0.14, 0.139]}, ((0.139, 0.14), "ImagerPixelSpacing")),
        ({}, ((1.0, 1.0), "")),
    ],
)
def test_dicom_pixel_spacing_goes_into_the_affine(tmp_path, spacing, expected):
    path = write_radiograph_dicom(tmp_path / "dx.dcm", radiograph_pixels(), modality="DX", **spacing)
    _, meta = read_radiograph(path)
    assert (meta["spacing"], meta["spacing_source"]) == expected
    image = LoadImaged("image", reader=RadiographReader(), image_only=True, ensure_channel_first=True)(
        {"image": str(path)}
    )["image"]
    assert image.shape == (1, 40, 30)  # columns (width) first, as PNGs
    np.testing.assert_allclose(image.affine.diagonal()[:2], expected[0])
    np.testing.assert_allclose(image.pixdim[:2], expected[0])


def _jpeg_lossless_available() -> bool:
    from pydicom.pixels import get_decoder

    return get_decoder(JPEGLosslessSV1).is_available


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEGLosslessSV1, JPEGBaseline8Bit])
def test_compressed_dicom_decodes(tmp_path, syntax):
    bits = 8 if syntax == JPEGBaseline8Bit else 12
    stored = radiograph_pixels(bits=bits)
    source = write_radiograph_dicom(tmp_path / "plain.dcm", stored)
    if syntax == JPEGLosslessSV1:  # the common CR/DX syntax: GDCM (python-gdcm) decodes it, and encodes it here
        if not _jpeg_lossless_available():
            pytest.skip("no JPEG lossless decoder (python-gdcm) installed")
        import gdcm

        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.SetFileName(str(tmp_path / "compressed.dcm"))
        assert writer.Write()
        path = tmp_path / "compressed.dcm"
    else:
        path = write_radiograph_dicom(tmp_path / "compressed.dcm", stored, syntax=syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    grey, _ = read_radiograph(path)
    if syntax == JPEGBaseline8Bit:  # lossy
        assert np.abs(grey - stored).mean() < 2
    else:
        np.testing.assert_array_equal(grey, stored)


def test_dicom_grey_saved_as_rgb_is_read_and_a_colour_one_refused(tmp_path):
    pixels = radiograph_pixels(bits=8)
    rgb = np.repeat(pixels[..., None], 3, axis=-1)
    grey, meta = read_radiograph(write_radiograph_dicom(tmp_path / "sc.dcm", rgb, modality="OT", photometric="RGB"))
    np.testing.assert_allclose(grey, pixels, atol=0.5)
    assert meta["mode"] == "RGB"
    colour = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = write_radiograph_dicom(tmp_path / "photo.dcm", colour, modality="OT", photometric="RGB")
    assert "a colour image" in _problem(path)


def test_dicom_that_is_no_frontal_radiograph_is_refused(tmp_path):
    pixels = radiograph_pixels()
    assert "DICOM modality CT (CT Image Storage) is not a projection radiograph" in _problem(
        Path(get_testdata_file("CT_small.dcm"))
    )
    assert "DICOM modality MR" in _problem(Path(get_testdata_file("MR_small.dcm")))
    assert "DICOM modality US" in _problem(Path(get_testdata_file("examples_rgb_color.dcm")))
    assert "has no pixel data (RT Plan Storage)" in _problem(Path(get_testdata_file("rtplan.dcm")))
    lateral = write_radiograph_dicom(tmp_path / "lat.dcm", pixels, modality="DX", ViewPosition="LL")
    assert "a lateral view (View Position LL)" in _problem(lateral)
    assert read_radiograph(lateral, allow_lateral=True)[1]["view_position"] == "LL"
    assert check_radiograph(lateral) == [_problem(lateral)] and check_radiograph(lateral, allow_lateral=True) == []
    # radcascade validate follows the bundle's allow_lateral_views, as the stages do
    from pipelines.cli.config_checks import validate_workflow

    problems, _ = validate_workflow("chest_xray", [str(lateral)])
    assert problems == [_problem(lateral)]
    assert validate_workflow("chest_xray", [str(lateral)], {"allow_lateral_views": True})[0] == []
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10232", "SRT", "left lateral"
    coded = write_radiograph_dicom(tmp_path / "coded.dcm", pixels, ViewCodeSequence=[code])
    assert "View Code 'left lateral'" in _problem(coded)
    code.CodeMeaning = "left lateral decubitus"  # a frontal beam on a patient lying on the side
    read_radiograph(write_radiograph_dicom(tmp_path / "decubitus.dcm", pixels, ViewCodeSequence=[code]))
    frames = write_radiograph_dicom(tmp_path / "frames.dcm", pixels, NumberOfFrames=2)
    assert "DICOM has 2 frames" in _problem(frames)
    assert check_radiograph(frames, check_intensity=False) == [_problem(frames)]  # the header tells


def test_dicom_files_are_found_by_their_preamble_whatever_their_name(tmp_path):
    folder = tmp_path / "study"
    plain = write_radiograph_dicom(folder / "IM0001", radiograph_pixels())
    dotted = write_radiograph_dicom(folder / "1.2.840.99.1", radiograph_pixels())
    write_radiograph_dicom(folder / "DICOMDIR", radiograph_pixels())  # an index: never an input
    write_png(folder / "b.png", radiograph_pixels(bits=8))
    (folder / "notes.txt").write_text("x" * 200)
    assert is_dicom_file(plain) and not is_dicom_file(folder / "notes.txt") and not is_dicom_file(folder / "nope")
    assert is_radiograph_file(tmp_path / "any.dcm") and not is_radiograph_file(folder / "DICOMDIR")
    assert [Path(i["image"]).name for i in list_xray_inputs(folder)] == [dotted.name, plain.name, "b.png"]
    assert list_xray_inputs(plain) == [{"image": str(plain)}]
    assert check_radiograph(plain) == [] and check_radiograph(dotted, check_intensity=False) == []


def test_truncated_dicom_fails_on_decoding_only(tmp_path):
    path = write_radiograph_dicom(tmp_path / "cr.dcm", radiograph_pixels(rows=60, columns=80))
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-4000])
    assert check_radiograph(cut, check_intensity=False) == []
    (problem,) = check_radiograph(cut)
    assert problem.startswith(f"{cut}: ") and "DICOM" in problem


# ------------------------------------------------------------------------------- the configs' letterbox resize


def _xray_transforms(image_size=(32, 32)) -> Compose:
    parser = ConfigParser()
    parser.read_config(get_workflow("chest_xray").config_files("inference")[:1])
    parser.update({"image_size": list(image_size), "classifier_image_size": list(image_size)})
    return Compose(parser.get_parsed_content("preprocessing_transforms"))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: write_png(p / "tall16.png", radiograph_pixels(rows=90, columns=60, bits=16)),
        lambda p: write_radiograph_dicom(  # MONOCHROME1: the block is stored dark, shown bright
            p / "wide.dcm",
            4095 - radiograph_pixels(rows=50, columns=70),
            photometric="MONOCHROME1",
            PixelSpacing=[0.2, 0.1],
        ),
    ],
)
def test_letterbox_keeps_the_aspect_ratio_and_invertd_restores_the_exact_size(tmp_path, make):
    path = make(tmp_path)
    columns, rows = read_radiograph(path)[0].shape[::-1]
    preprocessing = _xray_transforms()
    data = preprocessing({"image": str(path)})
    image = data["image"]
    assert image.shape == (1, 32, 32)
    # the content fills the longer side and keeps its aspect ratio; the rest is the black padding
    content = (image[0] != image[0, 0, 0]).nonzero()
    extent = (content.max(dim=0).values - content.min(dim=0).values + 1).tolist()
    longer = int(np.argmax([columns, rows]))
    assert extent[longer] == 32 and abs(extent[1 - longer] - 32 * min(columns, rows) / max(columns, rows)) <= 1.5
    # a "prediction" that marks the bright block (top left) comes back at the input's size, not transposed
    block = (image > image.max() - 0.01).float()
    data["pred"] = MetaTensor(torch.cat([1 - block, block]), meta=dict(image.meta))  # with its affine
    mask = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert mask.shape == (2, columns, rows)
    truth = read_radiograph(path)[0].T == read_radiograph(path)[0].max()
    found = mask[1].numpy() > 0.5
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.8
    column_spacing, row_spacing = read_radiograph(path)[1]["spacing"]
    np.testing.assert_allclose(mask.affine.diagonal(), [column_spacing, row_spacing, 1, 1])


# ------------------------------------------------------------------------------------------------ damaged files


@pytest.mark.parametrize("kind", ["dicom", "png"])
def test_damaged_files_give_a_problem_naming_the_file_never_a_crash(tmp_path, kind):
    """Bytes overwritten here and there, sometimes cut short: each file is usable or refused with a DataError."""
    if kind == "dicom":
        seed = write_radiograph_dicom(
            tmp_path / "seed.dcm", radiograph_pixels(bits=12), PixelSpacing=[0.2, 0.2], **FULL_WINDOW_12_BIT
        ).read_bytes()
    else:
        seed = write_png(tmp_path / "seed.png", radiograph_pixels(bits=16)).read_bytes()
    rng = np.random.default_rng(0)
    for i in range(40):
        data = bytearray(seed)
        for where in rng.integers(0, len(data), size=rng.integers(1, 6)):
            data[where] = rng.integers(0, 256)
        if i % 3 == 0:
            data = data[: rng.integers(1, len(data))]
        path = tmp_path / f"mutant{i}.{'dcm' if kind == 'dicom' else 'png'}"
        path.write_bytes(bytes(data))
        for problem in check_radiograph(path) + check_radiograph(path, check_intensity=False):
            assert problem.startswith(f"{path}: "), problem
        try:
            pixels, _ = read_radiograph(path)
        except DataError as error:
            assert all(p.startswith(f"{path}: ") for p in error.problems)
        else:
            assert pixels.ndim == 2 and pixels.dtype == np.float32
