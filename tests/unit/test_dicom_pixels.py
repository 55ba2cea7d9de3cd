"""DICOM pixels as 8-bit frames: every image in pydicom's bundled corpus, then the display pipeline rules."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian

from transforms.dicom.pixels import (
    PixelDecodeError,
    frame_count,
    frames_8bit,
    has_pixels,
    select_frames,
    to_png,
)

CORPUS = Path(pydicom.data.__file__).parent / "test_files"
PIXEL_TAGS = [0x7FE00008, 0x7FE00009, 0x7FE00010]  # Float, Double Float and (plain) Pixel Data

# Files pydicom ships as broken examples, with the part of the decoder's message that says why.
BROKEN = {
    # JPEG codestream with invalid SOS parameters (README: JPGExtended.dcm is its fixed version).
    "JPEG-lossy.dcm": "libjpeg error code '-1038'",
    # Copy of JPEG2000.dcm with 4 codestream bytes replaced by a Sequence Delimiter (pydicom #1140).
    "JPEG2000-embedded-sequence-delimiter.dcm": "Error decoding the J2K data",
    # Pixel Data cut short: 8130 of 8192 bytes.
    "MR_truncated.dcm": "The number of bytes of pixel data is less than expected",
    # Number of Frames is '1A', not an integer string.
    "badVR.dcm": "invalid literal for int() with base 10: '1A'",
    # File meta without a Transfer Syntax UID, so the pixel data's encoding is unknown.
    "meta_missing_tsyntax.dcm": "(0002,0010) Transfer Syntax UID",
    # Pixel Data without the Image Pixel module (no Bits Allocated, Rows, ...).
    "nested_priv_SQ.dcm": "Missing required element: (0028,0100) 'Bits Allocated'",
}
# pydicom warnings these files raise on purpose (read or decode); each test expects exactly these.
EXPECTED_WARNINGS = {
    "SC_rgb_jpeg.dcm": "Expected explicit VR, but found implicit VR",
    "MR_small_padded.dcm": "excess padding to be removed",
    "badVR.dcm": "Invalid value for VR IS: '1A'",
}
MAX_DECODED_FRAMES = 32  # larger multi-frame files decode only their first and last frame


def _corpus_with_pixels() -> list[str]:
    """Names, relative to pydicom's test_files, of the bundled (not downloaded) files with pixel data."""
    names = []
    for path in sorted(Path(p) for p in get_testdata_files()):
        if not path.is_file() or CORPUS not in path.parents:
            continue
        # Only classifies files; each test re-reads its own file and checks the warnings it expects.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, specific_tags=PIXEL_TAGS)
        if has_pixels(ds):
            names.append(path.relative_to(CORPUS).as_posix())
    return names


PIXEL_FILES = _corpus_with_pixels()


@contextlib.contextmanager
def _expected_warning(name: str) -> Iterator[None]:
    if name in EXPECTED_WARNINGS:
        with pytest.warns(UserWarning, match=EXPECTED_WARNINGS[name]):
            yield
    else:
        yield


def test_corpus_lists_are_current() -> None:
    assert len(PIXEL_FILES) > 80, "pydicom's bundled test files were not found"
    assert set(BROKEN) <= set(PIXEL_FILES)
    assert set(EXPECTED_WARNINGS) <= set(PIXEL_FILES)


@pytest.mark.parametrize("name", PIXEL_FILES)
def test_corpus_file(name: str) -> None:
    with _expected_warning(name):
        ds = pydicom.dcmread(CORPUS / name, force=True)
        if name in BROKEN:
            with pytest.raises(PixelDecodeError) as caught:
                frames_8bit(ds)
            error = caught.value
            assert BROKEN[name] in error.reason and str(error) == error.reason
            if error.__cause__ is not None:  # the decoder's own exception, message kept whole
                assert str(error.__cause__) in error.reason
            return
        count = frame_count(ds)
        assert count == int(ds.get("NumberOfFrames") or 1)
        indices = None if count <= MAX_DECODED_FRAMES else [0, count - 1]
        frames = frames_8bit(ds, indices)
    assert len(frames) == (count if indices is None else 2)
    colour = ds.SamplesPerPixel == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"
    shape = (ds.Rows, ds.Columns, 3) if colour else (ds.Rows, ds.Columns)
    for frame in frames:
        assert frame.shape == shape and frame.dtype == np.uint8 and frame.flags.c_contiguous


# -- targeted: grayscale pipeline ----------------------------------------------------------------
def _image(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
           **elements: Any) -> Dataset:
    """An in-memory, uncompressed image dataset with extra top-level ``elements``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _corpus_file(name: str) -> Dataset:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), name
    return pydicom.dcmread(path)


RAMP = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every 12-bit value once


def test_monochrome1_is_the_inverse_of_monochrome2() -> None:
    [mono2] = frames_8bit(_image(RAMP, "MONOCHROME2", 12))
    [mono1] = frames_8bit(_image(RAMP, "MONOCHROME1", 12))
    assert mono2[0, 0] == 0 and mono2[-1, -1] == 255  # no window: min..max
    np.testing.assert_array_equal(mono1, 255 - mono2)
    # Same result with a window: inversion comes after VOI.
    window = {"WindowCenter": 2048, "WindowWidth": 1024}
    [mono2] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, **window))
    [mono1] = frames_8bit(_image(RAMP, "MONOCHROME1", 12, **window))
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_window_clips_outside_values() -> None:
    [out] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1024))
    flat = out.ravel()  # index == stored value
    assert (flat[:1536] == 0).all() and (flat[2560:] == 255).all()
    assert 0 < flat[1600] < flat[2048] < flat[2500] < 255 and abs(int(flat[2048]) - 128) <= 1
    assert (np.diff(flat.astype(int)) >= 0).all()


def test_first_window_of_several_and_voi_lut_functions() -> None:
    [single] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1024))
    [first] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=[2048, 100], WindowWidth=[1024, 50]))
    np.testing.assert_array_equal(first, single)
    [sigmoid] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1024,
                                   VOILUTFunction="SIGMOID"))
    flat = sigmoid.ravel()
    assert flat[0] == 0 and flat[-1] == 255 and abs(int(flat[2048]) - 128) <= 1
    assert 0 < flat[1536] < 128 < flat[2560] < 255  # no hard clip at the window edges
    [exact] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1024,
                                 VOILUTFunction="LINEAR_EXACT"))
    assert exact.ravel()[1536] == 0 and exact.ravel()[2560] == 255


def test_unusable_window_falls_back_to_min_max() -> None:
    [plain] = frames_8bit(_image(RAMP, "MONOCHROME2", 12))
    [zero_width] = frames_8bit(_image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=0))
    np.testing.assert_array_equal(zero_width, plain)


def test_rescale_is_applied_before_the_window() -> None:
    # Stored 1024 is 0 HU with intercept -1024; a soft-tissue window of 0 +- 200 HU.
    ds = _image(RAMP, "MONOCHROME2", 12, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0,
                WindowWidth=400)
    flat = frames_8bit(ds)[0].ravel()
    assert (flat[:824] == 0).all() and (flat[1225:] == 255).all()
    assert abs(int(flat[1024]) - 128) <= 1
    # Slope 2: stored 512 is 0 HU, so the same window moves.
    ds = _image(RAMP, "MONOCHROME2", 12, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0,
                WindowWidth=400)
    flat = frames_8bit(ds)[0].ravel()
    assert (flat[:412] == 0).all() and (flat[613:] == 255).all() and abs(int(flat[512]) - 128) <= 1


def test_modality_and_voi_lut_sequences() -> None:
    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    modality = Dataset()
    modality.LUTDescriptor = [4, 0, 16]  # 8 or 16 (PS3.3 C.11.1.1.1)
    modality.LUTData = [4095, 2000, 1000, 0]  # inverts
    [out] = frames_8bit(_image(pixels, "MONOCHROME2", 12, ModalityLUTSequence=[modality]))
    assert out.tolist() == [[255, 125, 62, 0]]  # min..max of the LUT output
    voi = Dataset()
    voi.LUTDescriptor = [2, 1, 8]  # inputs below 1 take the first entry, above 2 the last
    voi.LUTData = [51, 204]
    [out] = frames_8bit(_image(pixels, "MONOCHROME2", 12, VOILUTSequence=[voi]))
    assert out.tolist() == [[51, 51, 204, 204]]


def test_per_frame_functional_groups_are_honoured() -> None:
    ds = _image(np.stack([RAMP, RAMP]), "MONOCHROME2", 12)
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1, -1024
    shared = Dataset()
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for center in (0, 1000):  # HU
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 400
        frames.append(Dataset())
        frames[-1].FrameVOILUTSequence = [voi]
    ds.PerFrameFunctionalGroupsSequence = frames
    first, second = (frame.ravel() for frame in frames_8bit(ds))
    assert abs(int(first[1024]) - 128) <= 1 and abs(int(second[2024]) - 128) <= 1
    assert second[1024] == 0 and first[2024] == 255
    assert "WindowCenter" not in ds and ds.BitsStored == 12  # the caller's dataset is left alone


def test_signed_float_one_bit_and_unused_high_bits() -> None:
    signed = np.array([[-1000, 0, 1000]], dtype=np.int16)
    [out] = frames_8bit(_image(signed, "MONOCHROME2", 16))
    assert out.tolist() == [[0, 128, 255]]

    floats = np.array([[-1.5, 0.0, 1.5], [np.nan, 0.75, -0.75]], dtype=np.float32)
    ds = _image(np.zeros((2, 3), dtype=np.uint8))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = floats.tobytes()
    assert has_pixels(ds)
    [out] = frames_8bit(ds)
    assert out.tolist() == [[0, 128, 255], [0, 191, 64]]  # NaN shows as black

    [liver] = frames_8bit(_corpus_file("liver_1frame.dcm"))
    assert set(np.unique(liver).tolist()) == {0, 255}  # bit-packed 0/1 masks

    clean = _image(RAMP, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1024)
    dirty = _image(RAMP | 0xA000, "MONOCHROME2", 16, WindowCenter=2048, WindowWidth=1024)
    dirty.BitsStored, dirty.HighBit = 12, 11  # garbage in the 4 unused high bits
    np.testing.assert_array_equal(frames_8bit(dirty)[0], frames_8bit(clean)[0])


# -- targeted: colour ------------------------------------------------------------------------------
def test_palette_color_gives_rgb() -> None:
    ds = _corpus_file("examples_palette.dcm")
    [out] = frames_8bit(ds)
    assert out.shape == (ds.Rows, ds.Columns, 3) and out.dtype == np.uint8
    assert not (np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]))
    expected = np.rint(apply_color_lut(ds.pixel_array, ds) / 257.0)  # 16-bit palette entries
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", [
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",  # YBR_FULL, JPEG baseline (the JPEG decoder converts)
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422, uncompressed (pydicom converts)
])
def test_ybr_matches_the_rgb_reference(name: str) -> None:
    [reference] = frames_8bit(_corpus_file("SC_rgb_rle.dcm"))  # same image, RGB, lossless
    [out] = frames_8bit(_corpus_file(name))
    assert out.shape == reference.shape
    # About 0.6 from lossy JPEG and chroma subsampling; converting YBR to RGB twice gives about 96.
    assert np.abs(out.astype(int) - reference.astype(int)).mean() < 1.5


def test_uncompressed_ybr_full_is_converted_once() -> None:
    rgb = np.random.default_rng(7).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    [out] = frames_8bit(_image(ybr, "YBR_FULL", 8))
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 2


def test_rgb_above_8_bits_is_scaled() -> None:
    [eight] = frames_8bit(_corpus_file("SC_rgb_rle.dcm"))
    [sixteen] = frames_8bit(_corpus_file("SC_rgb_rle_16bit.dcm"))
    [thirty_two] = frames_8bit(_corpus_file("SC_rgb_rle_32bit.dcm"))
    np.testing.assert_array_equal(sixteen, eight)
    np.testing.assert_array_equal(thirty_two, eight)


# -- frames, errors, PNG -----------------------------------------------------------------------------
def test_select_frames() -> None:
    assert select_frames(1, "first", 8) == [0] and select_frames(9, "first", 8) == [0]
    assert select_frames(1, "middle", 8) == [0] and select_frames(9, "middle", 8) == [4]
    assert select_frames(4, "middle", 8) == [2]
    assert select_frames(5, "all", 8) == [0, 1, 2, 3, 4] and select_frames(8, "all", 8) == list(range(8))
    assert select_frames(100, "all", 5) == [0, 25, 50, 74, 99]
    assert select_frames(10, "all", 3) == [0, 5, 9] and select_frames(10, "all", 1) == [0]
    for count in range(2, 60):
        for max_frames in range(2, count):
            picked = select_frames(count, "all", max_frames)
            assert len(picked) == max_frames and picked[0] == 0 and picked[-1] == count - 1
            assert picked == sorted(set(picked)) == select_frames(count, "all", max_frames)
    with pytest.raises(ValueError, match="unknown frame mode 'last'"):
        select_frames(3, "last", 8)
    with pytest.raises(ValueError, match="max_frames"):
        select_frames(3, "all", 0)
    with pytest.raises(ValueError, match="frame count"):
        select_frames(0, "first", 8)


def test_frame_count_and_indices() -> None:
    ds = _corpus_file("rtdose.dcm")
    assert frame_count(ds) == 15
    frames = frames_8bit(ds, [14, 0])
    np.testing.assert_array_equal(frames[1], frames_8bit(ds, [0])[0])
    assert frames_8bit(ds, []) == []
    with pytest.raises(IndexError, match=r"\[15\] are outside an image of 15 frame"):
        frames_8bit(ds, [0, 15])
    single = _image(RAMP, "MONOCHROME2", 12)
    assert frame_count(single) == 1
    single.NumberOfFrames = 0
    assert frame_count(single) == 1


def test_decoder_failure_names_the_transfer_syntax() -> None:
    ds = _image(RAMP, "MONOCHROME2", 12)
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(PixelDecodeError, match=r"^cannot decode pixel data \(Explicit VR Little Endian\): "
                                               r"The number of bytes of pixel data is less than expected"):
        frames_8bit(ds)


def test_unsupported_photometric_interpretation_is_a_pixel_decode_error() -> None:
    ds = _image(np.zeros((4, 4, 3), dtype=np.uint8), "RGB", 8)
    ds.PhotometricInterpretation = "YBR_PARTIAL_422"
    with pytest.raises(PixelDecodeError, match="'YBR_PARTIAL_422' with 3 sample"):
        frames_8bit(ds)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_png_round_trips_exactly(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(to_png(array)))
    assert image.format == "PNG" and image.mode == ("L" if len(shape) == 2 else "RGB")
    np.testing.assert_array_equal(np.asarray(image), array)


def test_png_rejects_non_8bit_arrays() -> None:
    with pytest.raises(ValueError, match="uint8 HxW or HxWx3"):
        to_png(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match="uint8 HxW or HxWx3"):
        to_png(np.zeros((4, 4, 4), dtype=np.uint8))
