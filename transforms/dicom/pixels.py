"""DICOM pixel data as 8-bit display frames, following the DICOM display pipeline.

Grayscale frames go through the Modality LUT, then the VOI LUT or window, then MONOCHROME1 inversion
(PS3.3 C.11, PS3.4 N.2); colour frames come out as RGB.  pydicom decodes (with the pylibjpeg plugins of
the ``dicom`` extra) and applies the LUTs; this module picks frames, maps every result to ``uint8`` and
encodes PNG.  Datasets are typed ``Any`` so that pydicom is imported only when pixels are decoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
FRAME_MODES = ("first", "middle", "all")

# Attributes of the grayscale pipeline; a frame's functional groups override the top-level values.
_DISPLAY_KEYWORDS = frozenset({
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
})
# Functional group macros (PS3.3 C.7.6.16.2) that carry those attributes in enhanced multi-frame images.
_DISPLAY_MACROS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
# What pydicom's LUT functions raise on headers they cannot use.
_HEADER_ERRORS = (AttributeError, IndexError, KeyError, NotImplementedError, TypeError, ValueError)


class PixelDecodeError(ValueError):
    """Pixel data that cannot be decoded or displayed.

    ``reason`` says what failed and carries the decoder's own message, e.g.
    ``"cannot decode pixel data (JPEG 2000 Image Compression): <message>"``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def has_pixels(ds: Any) -> bool:
    """Whether the dataset has Pixel Data, Float Pixel Data or Double Float Pixel Data."""
    return any(keyword in ds for keyword in PIXEL_KEYWORDS)


def frame_count(ds: Any) -> int:
    """Number of Frames, or 1 when it is absent, empty or below 1.

    Raises PixelDecodeError when the value is not an integer.
    """
    value = ds.get("NumberOfFrames")
    if value is None or value == "":
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError) as exc:
        raise PixelDecodeError(f"invalid (0028,0008) Number of Frames {value!r}: {exc}; "
                               "correct the header to the number of frames in the pixel data") from exc
    return max(count, 1)


def select_frames(count: int, mode: str, max_frames: int) -> list[int]:
    """Frame indices to render from a ``count``-frame image; deterministic.

    ``"first"`` gives ``[0]``, ``"middle"`` gives ``[count // 2]``; ``"all"`` gives every index when
    ``count <= max_frames``, otherwise ``max_frames`` indices evenly spaced from the first frame to the last
    (only the first when ``max_frames`` is 1).
    """
    if count < 1:
        raise ValueError(f"frame count must be at least 1, got {count}; use frame_count(ds)")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if mode == "first":
        return [0]
    if mode == "middle":
        return [count // 2]
    if mode != "all":
        raise ValueError(f"unknown frame mode {mode!r}; use one of {', '.join(FRAME_MODES)}")
    if count <= max_frames:
        return list(range(count))
    if max_frames == 1:
        return [0]
    # Integer round-half-up of i * (count - 1) / (max_frames - 1): exact, and distinct since count > max_frames.
    steps = max_frames - 1
    return [(2 * i * (count - 1) + steps) // (2 * steps) for i in range(max_frames)]


def frames_8bit(ds: Any, indices: list[int] | None = None) -> list[np.ndarray]:
    """One C-contiguous ``uint8`` array per requested frame (every frame when ``indices`` is None).

    Grayscale frames are HxW after the Modality LUT (rescale or LUT), the VOI LUT or first window (else, or
    when the window is unusable, the frame's own min..max) and MONOCHROME1 inversion, so that 255 is white;
    enhanced multi-frame images use each frame's functional groups.  Colour frames (RGB, YBR_*,
    PALETTE COLOR) are HxWx3 RGB scaled to 8 bits.  Raises PixelDecodeError when the pixel data cannot be
    decoded or its header cannot be displayed, and IndexError for an index outside the image.
    """
    count = frame_count(ds)
    wanted = list(range(count)) if indices is None else list(indices)
    outside = [index for index in wanted if not 0 <= index < count]
    if outside:
        raise IndexError(f"frame indices {outside} are outside an image of {count} frame(s); "
                         "pick them with select_frames(frame_count(ds), ...)")
    if not wanted:
        return []
    frames = []
    for index, (frame, photometric) in zip(wanted, _decoded_frames(ds, wanted), strict=True):
        try:
            display = _display_frame(frame, ds, index, photometric)
        except PixelDecodeError:
            raise
        except _HEADER_ERRORS as exc:
            raise PixelDecodeError(f"cannot display frame {index} ({photometric}): {exc}") from exc
        frames.append(np.ascontiguousarray(display, dtype=np.uint8))
    return frames


def to_png(array: np.ndarray) -> bytes:
    """Lossless PNG of an 8-bit HxW (L) or HxWx3 (RGB) array; fast compression (level 1)."""
    from PIL import Image

    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"to_png needs a uint8 HxW or HxWx3 array, got {array.dtype} {array.shape}; "
                         "convert DICOM pixels with frames_8bit first")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# -- decoding ------------------------------------------------------------------------------------
def _decoded_frames(ds: Any, indices: list[int]) -> Iterator[tuple[np.ndarray, str]]:
    """Yield each requested frame as pydicom decodes it, with the Photometric Interpretation it is in.

    The decoder's own interpretation is used because pydicom converts YBR_FULL/YBR_FULL_422 (and the JPEG
    decoders YBR_ICT/YBR_RCT) to RGB while the dataset still says YBR.  Frames are decoded one at a time,
    so a few frames of a large multi-frame image cost only those frames.
    """
    from pydicom.pixels import as_pixel_options, get_decoder

    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if not syntax:
        raise PixelDecodeError("cannot decode pixel data (no transfer syntax): the file meta has no (0002,0010) "
                               "Transfer Syntax UID; read the file with its meta header or set "
                               "ds.file_meta.TransferSyntaxUID")
    try:
        decoder = get_decoder(syntax)
        options = as_pixel_options(ds)
        for frame, meta in decoder.iter_array(ds, indices=indices, raw=False, validate=True, **options):
            yield frame, str(meta.get("photometric_interpretation") or options.get("photometric_interpretation"))
    except Exception as exc:  # decoders and their plugins raise many types; all mean "cannot decode"
        raise PixelDecodeError(f"cannot decode pixel data ({syntax.name}): {exc}") from exc


# -- display -------------------------------------------------------------------------------------
def _display_frame(frame: np.ndarray, ds: Any, index: int, photometric: str) -> np.ndarray:
    """One decoded frame as uint8 grayscale or RGB."""
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        gray = _grayscale_8bit(frame, _frame_display_attributes(ds, index))
        return 255 - gray if photometric == "MONOCHROME1" else gray
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(frame, ds)[..., :3]  # drop alpha, if the palette has one
        return _scale_to_8bit(rgb, int(ds.RedPaletteColorLookupTableDescriptor[2]))
    if photometric == "RGB" and frame.ndim == 3 and frame.shape[2] == 3:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        return frame if frame.dtype == np.uint8 and bits == 8 else _scale_to_8bit(frame, bits)
    raise PixelDecodeError(f"cannot display pixel data: Photometric Interpretation {photometric!r} with "
                           f"{ds.get('SamplesPerPixel')} sample(s) per pixel is not supported; convert it to "
                           "RGB or MONOCHROME2 first")


def _frame_display_attributes(ds: Any, index: int) -> Any:
    """A small dataset with the grayscale pipeline attributes for frame ``index``.

    Top-level values first, then the shared and the frame's own functional groups (enhanced multi-frame),
    since pydicom's LUT functions read only the top level.  Working on a copy also keeps them from
    rewriting the caller's dataset (apply_windowing reassigns BitsStored and the rescale values).
    """
    from pydicom.dataset import Dataset

    attributes = Dataset()
    if getattr(ds, "file_meta", None) is not None:
        attributes.file_meta = ds.file_meta  # the endianness of OW LUT Data comes from here
    attributes.set_original_encoding(*ds.original_encoding)
    _copy_display_elements(ds, attributes)
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    groups = ([shared[0]] if shared else []) + ([per_frame[index]] if per_frame and index < len(per_frame) else [])
    for group in groups:
        for macro in _DISPLAY_MACROS:
            if group.get(macro):
                _copy_display_elements(group[macro].value[0], attributes)
    # Float pixel data has no Bits Stored or Pixel Representation; windowing needs them only for its range.
    if "BitsStored" not in attributes:
        attributes.BitsStored = int(ds.get("BitsAllocated") or 32)
    if "PixelRepresentation" not in attributes:
        attributes.PixelRepresentation = 0
    return attributes


def _copy_display_elements(source: Any, target: Any) -> None:
    """Copy the grayscale pipeline elements present in ``source`` to ``target``."""
    for keyword in _DISPLAY_KEYWORDS:
        if keyword in source:
            target[keyword] = source[keyword]


def _grayscale_8bit(frame: np.ndarray, attributes: Any) -> np.ndarray:
    """Modality LUT, then VOI LUT or window (else min..max), mapped to 0..255 (MONOCHROME2 sense)."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(frame, attributes)
    if attributes.get("VOILUTSequence"):  # pydicom's choice too when both a LUT and a window are present
        descriptor = attributes.VOILUTSequence[0].LUTDescriptor
        entries, first, bits = int(descriptor[0]) or 2**16, int(descriptor[1]), int(descriptor[2])
        # Clamp to the LUT's input range first (PS3.3 C.11.2.1.1): pydicom would wrap larger values.
        inputs = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
        return _map_to_8bit(apply_voi(inputs, attributes), 0.0, float(2**bits - 1))
    if "WindowCenter" in attributes and "WindowWidth" in attributes:
        try:
            # The window's output range depends on Bits Stored, rescale and LUT depth: ask pydicom for it.
            below, above = apply_windowing(np.array([-np.inf, np.inf]), attributes)
        except ValueError:
            pass  # an unusable window (width < 1, unknown VOI LUT Function) falls back to min..max
        else:
            return _map_to_8bit(apply_windowing(values, attributes), float(below), float(above))
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return _map_to_8bit(values, float(finite.min()), float(finite.max()))


def _map_to_8bit(values: np.ndarray, black: float, white: float) -> np.ndarray:
    """Linearly map ``black`` to 0 and ``white`` to 255, clipping; NaN becomes 0, a flat range all 0."""
    if white == black:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.asarray(values, dtype=np.float64) - black) * (255.0 / (white - black))
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.rint(scaled).astype(np.uint8)


def _scale_to_8bit(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-bit samples scaled to 0..255."""
    return _map_to_8bit(values, 0.0, float(2**bits - 1))
