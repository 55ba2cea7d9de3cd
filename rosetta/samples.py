"""The demo's sample data: real photographs from scikit-image's wheel with captions this repo ships."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rosetta.core.errors import ConfigError

CAPTIONS_FILE = Path(__file__).resolve().parent.parent / "sample_data" / "photos.json"


def skimage_data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise ConfigError("the demo photos come from scikit-image's wheel; pip install 'rosetta-data[samples]' "
                          "(scikit-image==0.26.*)", setting="scikit-image") from None
    return Path(skimage.__file__).resolve().parent / "data"


def captions() -> dict[str, str]:
    data = json.loads(CAPTIONS_FILE.read_text(encoding="utf-8"))
    return {name: text for name, text in data.items() if not name.startswith("_")}


def write_sample_folder(dest: Path) -> tuple[int, int]:
    """Copy the photos (byte for byte) and write caption sidecars into ``dest``.

    Files already present with the same content are left alone, so running it
    twice changes nothing.  Returns (files written, files already there).
    """
    source = skimage_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for name, caption in sorted(captions().items()):
        image_src = source / name
        if not image_src.is_file():
            raise ConfigError(f"sample photo {image_src} is missing from scikit-image; reinstall scikit-image==0.26.*",
                              setting="scikit-image")
        image_dst = dest / name
        caption_dst = dest / (Path(name).stem + ".txt")
        if image_dst.is_file() and image_dst.read_bytes() == image_src.read_bytes():
            kept += 1
        else:
            shutil.copyfile(image_src, image_dst)
            written += 1
        text = caption + "\n"
        if caption_dst.is_file() and caption_dst.read_text(encoding="utf-8") == text:
            kept += 1
        else:
            caption_dst.write_text(text, encoding="utf-8")
            written += 1
    return written, kept
