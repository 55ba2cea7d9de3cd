"""Contract harness for ``documents``: real PDFs (written by hand, as PDF writers do) and HTML pages.

The PDF builder here is also used by ``tests/unit/test_documents.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest


def _pdf_string(text: str) -> bytes:
    return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1") + b")"


def make_pdf(pages: Sequence[str], *, info: Mapping[str, str] | None = None, encrypted: bool = False) -> bytes:
    """A valid PDF 1.4 with one page (US Letter, Helvetica 12 pt) per string, lines split on ``\\n``.

    ``info`` becomes the document information dictionary (``CreationDate``...).  ``encrypted``
    adds a standard security handler whose user password is not empty, so a reader without
    the password cannot open it.
    """
    objects: list[bytes] = [b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", b""]  # 1 font, 2 pages
    kids = []
    for text in pages:
        ops = b"BT /F1 12 Tf 14 TL 72 720 Td " + b" ".join(_pdf_string(line) + b" Tj T*"
                                                           for line in text.split("\n")) + b" ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> "
                       b">> /Contents %d 0 R >>" % (len(objects)))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    trailer = b"/Root %d 0 R" % len(objects)
    if info:
        objects.append(b"<< " + b" ".join(b"/" + k.encode() + b" " + _pdf_string(v) for k, v in info.items()) + b" >>")
        trailer += b" /Info %d 0 R" % len(objects)
    if encrypted:
        objects.append(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>")
        trailer += b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (len(objects), b"33" * 16, b"33" * 16)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def tiny_png(grey: int = 128) -> bytes:
    """A real 4x4 grey PNG."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (4, 4), grey).save(out, format="PNG")
    return out.getvalue()


def write_after_all(root: Path, rel: str, data: bytes) -> Path:
    """Write ``root/rel`` with a modification time after every file under ``root`` (cursor order)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = max(p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()) + 10**9
    os.utime(path, ns=(stamp, stamp))
    return path


class DocumentsHarness:
    name = "documents"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "docs"
        write_after_all(root, "manual.pdf", make_pdf(["Chapter one", "Chapter two"],
                                                      info={"CreationDate": "D:20260102030405+01'00'"}))
        write_after_all(root, "notes/memo.pdf", make_pdf(["A memo"]))
        write_after_all(root, "site/logo.png", tiny_png())
        write_after_all(root, "site/index.html", b"<html><head><title>Home</title></head><body><h1>Welcome</h1>"
                                                      b"<img src='logo.png'></body></html>")
        return {"root": str(root), "source": "contract_documents", "render_dpi": 36}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        write_after_all(root, "fresh.pdf", make_pdf(["Fresh"]))
        write_after_all(root, "site/about.html", b"<p>About us</p>")
        return {"fresh.pdf", "site/about.html"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        good = make_pdf(["Secret"])
        write_after_all(root, "locked.pdf", make_pdf(["Secret"], encrypted=True))
        write_after_all(root, "cut.pdf", good[: len(good) - 40])
        write_after_all(root, "noise.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
        write_after_all(root, "latin.html", "<p>Caf\u00e9 cr\u00e8me</p>".encode("latin-1"))
        return {"locked.pdf", "cut.pdf", "noise.pdf", "latin.html"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "root": str(Path(options["root"]) / "missing")},
            {**options, "timezone": "Nowhere/Land"},
            {**options, "html_encoding": "no-such-codec"},
            {**options, "render_dpi": 0},
        ]


HARNESS = DocumentsHarness()
