from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from connectors.documents import decode_html, html_visible_text, parse_html_time, parse_pdf_date
from connectors.sdk import Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError
from schemas.records import SourceRecord
from tests.contract.harness_documents import make_pdf, tiny_png, write_after_all

BERLIN = ZoneInfo("Europe/Berlin")


def _connector(root: Path, **options: object):  # type: ignore[no-untyped-def]
    return load_connector("documents", {"root": str(root), "source": "docs", **options})


def _fetch(root: Path, source_id: str, **options: object) -> list[SourceRecord]:
    connector = _connector(root, **options)
    [item] = [i for i in connector.list_items(State(), Window()) if i.source_id == source_id]
    return list(connector.fetch(item))


def _bad(root: Path, source_id: str, **options: object) -> BadRecordError:
    with pytest.raises(BadRecordError) as err:
        _fetch(root, source_id, **options)
    assert err.value.source_id == source_id and err.value.payload
    return err.value


# -- pure parsing --------------------------------------------------------------------------------------
def test_pdf_dates() -> None:
    assert parse_pdf_date("D:20260102030405+01'00'", BERLIN) == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert parse_pdf_date("D:20260102030405-05'30", BERLIN) == datetime(2026, 1, 2, 8, 34, 5, tzinfo=UTC)
    assert parse_pdf_date("D:20260102030405Z00'00'", BERLIN) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_pdf_date("D:20260702030405", BERLIN) == datetime(2026, 7, 2, 1, 4, 5, tzinfo=UTC)  # CEST
    assert parse_pdf_date("20260102", UTC) == datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a PDF date"):
        parse_pdf_date("Tuesday", UTC)


def test_html_times() -> None:
    assert parse_html_time("2026-03-04T10:00:00+01:00", UTC) == datetime(2026, 3, 4, 9, tzinfo=UTC)
    assert parse_html_time("2026-03-04", BERLIN) == datetime(2026, 3, 3, 23, tzinfo=UTC)
    assert parse_html_time("2026-03-04T10:00:00", BERLIN) == datetime(2026, 3, 4, 9, tzinfo=UTC)


def test_visible_text_skips_head_scripts_styles_and_hidden_elements() -> None:
    text, title, meta, images = html_visible_text(
        "<!doctype html><html><head><title> My  page </title><meta name='Date' content='2026-01-01'>"
        "<style>p{color:red}</style><script>var x = '<p>no</p>';</script></head><body>"
        "<h1>Title &amp; more</h1><p>First   para<br>next line</p><div hidden><p>secret</p><img src='h.png'></div>"
        "<template><p>tpl</p></template><noscript>enable js</noscript><ul><li>one</li><li>two</li></ul>"
        "<p>inline <b>bold</b> text<img src='a.png' alt='x'></p></body></html>")
    assert text == "Title & more\nFirst para\nnext line\none\ntwo\ninline bold text"
    assert title == "My page" and meta == {"date": "2026-01-01"} and images == ["a.png"]


def test_decode_html_uses_bom_then_meta_charset_then_default() -> None:
    assert decode_html("\ufeff<p>é</p>".encode(), "ascii") == ("<p>é</p>", "utf-8-sig")
    assert decode_html('<meta charset="windows-1252"><p>€</p>'.encode("cp1252"), "utf-8")[0].endswith("€</p>")
    assert decode_html("<p>é</p>".encode("latin-1"), "latin-1") == ("<p>é</p>", "latin-1")
    with pytest.raises(UnicodeDecodeError):
        decode_html("<p>é</p>".encode("latin-1"), "utf-8")


# -- PDF -----------------------------------------------------------------------------------------------
def test_pdf_one_record_per_page_with_text_rendered_image_and_document_time(tmp_path: Path) -> None:
    data = make_pdf(["Hello page one\nsecond line", "Page (two)"],
                    info={"CreationDate": "D:20260102030405+01'00'", "ModDate": "D:20270101000000Z",
                          "Title": "Manual"})
    (tmp_path / "manuals").mkdir()
    (tmp_path / "manuals" / "guide.pdf").write_bytes(data)
    records = _fetch(tmp_path, "manuals/guide.pdf", render_dpi=36)
    assert [r.source_id for r in records] == ["manuals/guide.pdf/page-1", "manuals/guide.pdf/page-2"]
    assert [r.text for r in records] == ["Hello page one\nsecond line", "Page (two)"]
    first = records[0]
    assert first.event_time == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert first.event_time_origin == "pdf_creation_date"
    assert first.keys == {"document_id": "manuals/guide.pdf"}
    assert [(o.role, o.media_type) for o in first.objects] == [("image", "image/png"), ("document", "application/pdf")]
    assert first.objects[1].data == data
    with Image.open(io.BytesIO(first.objects[0].data)) as page:
        assert page.size == (306, 396)  # US Letter (612 x 792 pt) at 36 dpi = half a pixel per point
        darkest = page.convert("L").getextrema()[0]
        assert isinstance(darkest, int) and darkest < 128  # the text is drawn
    assert first.metadata == {"path": "manuals/guide.pdf", "format": "pdf", "pages": 2, "title": "Manual", "page": 1,
                              "width_pt": 612.0, "height_pt": 792.0, "dpi": 36.0}


def test_pdf_time_falls_back_to_mod_date_then_mtime_and_notes_bad_dates(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(make_pdf(["x"], info={"CreationDate": "yesterday", "ModDate": "D:20260304"}))
    [record] = _fetch(tmp_path, "a.pdf", timezone="Europe/Berlin")
    assert (record.event_time, record.event_time_origin) == (datetime(2026, 3, 3, 23, tzinfo=UTC), "pdf_mod_date")
    assert record.metadata["unparsed_dates"] == [
        "CreationDate: 'yesterday' is not a PDF date (D:YYYYMMDDHHmmSS+HH'mm')"]
    (tmp_path / "b.pdf").write_bytes(make_pdf(["x"]))
    os.utime(tmp_path / "b.pdf", (1_700_000_000, 1_700_000_000))
    [record] = _fetch(tmp_path, "b.pdf")
    assert (record.event_time, record.event_time_origin) == (datetime.fromtimestamp(1_700_000_000, UTC), "mtime")


def test_pdf_text_only_and_page_limit(tmp_path: Path) -> None:
    (tmp_path / "long.pdf").write_bytes(make_pdf(["one", "two", "three"]))
    records = _fetch(tmp_path, "long.pdf", render_pages=False, max_pages_per_document=2)
    assert [r.text for r in records] == ["one", "two"]
    assert [o.role for o in records[0].objects] == ["document"]
    assert records[0].metadata["pages_left_out"] == 1 and "dpi" not in records[0].metadata


def test_blank_pdf_page_has_an_image_and_no_text(tmp_path: Path) -> None:
    (tmp_path / "blank.pdf").write_bytes(make_pdf([""]))
    [record] = _fetch(tmp_path, "blank.pdf", render_dpi=18)
    assert record.text is None and record.objects[0].role == "image"


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("locked.pdf", make_pdf(["secret"], encrypted=True), r"encrypted PDF and no \(or the wrong\) password"),
    ("cut.pdf", make_pdf(["some text"])[:-40], r"truncated PDF \(no %%EOF end marker\)"),
    ("noise.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n", "corrupt PDF"),
    ("renamed.pdf", b"PK\x03\x04 a zip file" * 10, "not a PDF"),
])
def test_malformed_pdfs_are_bad_records(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    assert _bad(tmp_path, name).payload == data
    with pytest.raises(BadRecordError, match=reason):
        _fetch(tmp_path, name)


def test_encrypted_pdf_with_a_wrong_password_is_still_a_bad_record(tmp_path: Path) -> None:
    (tmp_path / "locked.pdf").write_bytes(make_pdf(["secret"], encrypted=True))
    assert "set pdf_password" in _bad(tmp_path, "locked.pdf", pdf_password="guess").reason


# -- HTML ----------------------------------------------------------------------------------------------
def test_html_page_with_local_images_and_missing_remote_and_inline_ones_noted(tmp_path: Path) -> None:
    (tmp_path / "site" / "img").mkdir(parents=True)
    (tmp_path / "site" / "img" / "a b.png").write_bytes(tiny_png(10))
    (tmp_path / "logo.jpg").write_bytes(b"\xff\xd8\xff not checked")
    (tmp_path / "secret.png").write_bytes(tiny_png())
    (tmp_path / "site" / "page.html").write_text(
        "<html><head><meta charset='utf-8'><title>Page</title>"
        "<meta property='article:published_time' content='2026-02-03T04:05:06+01:00'></head>"
        "<body><p>Caption café</p><img src='img/a%20b.png'><img src='/logo.jpg'><img src='img/a b.png'>"
        "<img src='gone.png'><img src='https://cdn.example/x.png'><img src='data:image/png;base64,AAAA'>"
        "<img src='../../outside.png'></body></html>", encoding="utf-8")
    [record] = _fetch(tmp_path, "site/page.html")
    assert record.source_id == "site/page.html" and record.text == "Caption café"
    assert [(o.role, o.media_type) for o in record.objects] == [
        ("document", "text/html"), ("image", "image/png"), ("image-1", "image/jpeg")]
    assert record.objects[1].data == tiny_png(10)
    assert record.event_time == datetime(2026, 2, 3, 3, 5, 6, tzinfo=UTC)
    assert record.event_time_origin == "meta:article:published_time"
    assert record.metadata["images"] == ["site/img/a b.png", "logo.jpg"]
    assert record.metadata["missing_images"] == ["gone.png", "../../outside.png (outside the root)"]
    assert record.metadata["remote_images"] == ["https://cdn.example/x.png"]
    assert record.metadata["inline_images"] == ["data:image/png;base64,AAAA"]
    assert record.metadata["title"] == "Page" and record.metadata["encoding"] == "utf-8"
    assert json.loads(json.dumps(dict(record.metadata))) == record.metadata


def test_html_time_falls_back_to_mtime(tmp_path: Path) -> None:
    (tmp_path / "p.htm").write_text("<meta name='date' content='soon'><p>text</p>")
    os.utime(tmp_path / "p.htm", (1_700_000_000, 1_700_000_000))
    [record] = _fetch(tmp_path, "p.htm")
    assert (record.event_time, record.event_time_origin) == (datetime.fromtimestamp(1_700_000_000, UTC), "mtime")
    assert record.metadata["unparsed_dates"] == ["date: 'soon'"]


@pytest.mark.parametrize(("data", "reason"), [
    ("<p>Caf\u00e9</p>".encode("latin-1"), r"not valid utf-8 text \(invalid continuation byte at byte 6\)"),
    ('<meta charset="utf-8"><p>\u00e9t\u00e9</p>'.encode("cp1252"), "not valid utf-8"),
    (b'<meta charset="x-klingon"><p>hi</p>', "declares an unknown charset"),
    ("<p>text</p>".encode("utf-16-le"), "NUL characters"),
    (b"<html><head><title>nothing</title></head><body> <script>x()</script> </body></html>", "no visible text"),
])
def test_malformed_html_is_a_bad_record(tmp_path: Path, data: bytes, reason: str) -> None:
    (tmp_path / "bad.html").write_bytes(data)
    with pytest.raises(BadRecordError, match=reason):
        _fetch(tmp_path, "bad.html")
    assert _bad(tmp_path, "bad.html").payload == data


def test_html_encoding_option_reads_undeclared_legacy_pages(tmp_path: Path) -> None:
    (tmp_path / "old.html").write_bytes("<p>Caf\u00e9</p>".encode("cp1252"))
    [record] = _fetch(tmp_path, "old.html", html_encoding="cp1252")
    assert record.text == "Café"


# -- listing -------------------------------------------------------------------------------------------
def test_listing_is_documents_only_sorted_incremental_and_windowed(tmp_path: Path) -> None:
    write_after_all(tmp_path, "b.pdf", make_pdf(["b"]))
    write_after_all(tmp_path, "a.html", b"<p>a</p>")
    write_after_all(tmp_path, "a.pdf", make_pdf(["a"]))
    write_after_all(tmp_path, "style.css", b"p {}")
    write_after_all(tmp_path, "pic.png", tiny_png())
    write_after_all(tmp_path, ".hidden.pdf", make_pdf(["h"]))
    connector = _connector(tmp_path)
    items = connector.list_items(State(), Window())
    assert [(i.source_id, i.ref["kind"]) for i in items] == [("a.html", "html"), ("a.pdf", "pdf"), ("b.pdf", "pdf")]
    assert all(Item.from_json(json.loads(json.dumps(i.to_json()))) == i for i in items)
    state = State().advance(items)
    assert connector.list_items(state, Window()) == []
    write_after_all(tmp_path, "c.pdf", make_pdf(["c"]))
    assert [i.source_id for i in connector.list_items(state, Window())] == ["c.pdf"]
    assert connector.list_items(State(), Window(start=datetime.now(UTC) + timedelta(days=2))) == []


def test_module_imports_no_pdfium() -> None:
    code = "import sys, connectors.documents; sys.exit('pypdfium2' in sys.modules or 'PIL' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
