"""The fast JPEG/PNG check agrees with Pillow's verdict on real and broken images."""

from __future__ import annotations

import io
import zlib
from datetime import UTC
from pathlib import Path

import pytest
from PIL import Image

from connectors.media import check_image, plain_image_type
from rosetta.core.errors import BadRecordError

UTC_ZONE = UTC


def _jpeg(exif: bool = False) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (40, 30), (10, 200, 30))
    if exif:
        info = Image.Exif()
        info.get_ifd(0x8769)[36867] = "2024:05:06 07:08:09"
        image.save(out, "JPEG", exif=info)
    else:
        image.save(out, "JPEG")
    return out.getvalue()


def test_plain_images_take_the_fast_path(photo_dir: Path) -> None:
    assert plain_image_type(_jpeg()) == "image/jpeg"
    assert plain_image_type((photo_dir / "rocket.jpg").read_bytes()) == "image/jpeg"
    assert plain_image_type((photo_dir / "hubble_deep_field.jpg").read_bytes()) is None  # has an EXIF block
    assert plain_image_type((photo_dir / "coffee.png").read_bytes()) == "image/png"
    assert plain_image_type(_jpeg(exif=True)) is None  # EXIF time to read: Pillow's path
    assert plain_image_type(b"GIF89a....") is None


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "camera.png"])
def test_fast_and_pillow_paths_agree_on_real_photos(photo_dir: Path, name: str) -> None:
    data = (photo_dir / name).read_bytes()
    media_type, _ = check_image(name, data, source_id=name, zone=UTC_ZONE)
    with Image.open(io.BytesIO(data)) as image:
        assert media_type == Image.MIME[image.format or ""]


def _png_with_bad_crc(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[-5] ^= 0xFF  # the IEND CRC
    return bytes(broken)


def _png_zero_width() -> bytes:
    ihdr = (0).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = lambda kind, body: (len(body).to_bytes(4, "big") + kind + body  # noqa: E731
                                + zlib.crc32(kind + body).to_bytes(4, "big"))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("broken", [
    lambda p: _jpeg()[:-2],
    lambda p: _jpeg()[:200],
    lambda p: (p / "coffee.png").read_bytes()[:5000],
    lambda p: _png_with_bad_crc((p / "coffee.png").read_bytes()),
    lambda p: _png_zero_width(),
])
def test_broken_images_fall_back_to_pillow_and_are_rejected(photo_dir: Path, broken: object) -> None:
    data = broken(photo_dir)  # type: ignore[operator]
    assert plain_image_type(data) is None
    with pytest.raises(BadRecordError, match=r"cannot decode image|no pixels"):
        check_image("x", data, source_id="x", zone=UTC_ZONE)
