"""A folder of PDF documents and HTML pages: one record per page, text plus page image(s).

- **PDF** (``.pdf``): one record per page, source id ``<doc id>/page-<n>`` (``n`` from 1), with
  the page's text (PDFium text extraction) and the page rendered as a PNG (``render_dpi``).
  The event time is the document's ``CreationDate`` (else ``ModDate``) from its info dictionary
  (``D:YYYYMMDDHHmmSS+HH'mm'``; a date without an offset is read in ``timezone``), else the
  file's modification time.
- **HTML** (``.html``/``.htm``): one record per file, source id ``<doc id>``, with the visible
  text (no ``<head>``, ``<script>``, ``<style>``, ``<template>``, ``hidden`` elements) and every
  local ``<img src>`` that exists as an extra object (role ``image``, ``image-1``, ...); missing,
  remote and inline images are listed in the metadata.  The event time is the page's
  ``article:published_time``/``dc.date``/``date`` meta tag, else the file's modification time.

The doc id is the path relative to the root *with* its suffix, so ``a.pdf`` and ``a.html`` are
two documents.  Other files (stylesheets, the pages' images) are assets, not items.
Incremental by the document file's modification time (ns).  An encrypted PDF without the
password, a corrupt or truncated PDF, or an HTML page that is not in its declared encoding
becomes a :class:`BadRecordError` naming the file and the fix.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from datetime import time as time_of_day
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import ensure_utc, from_timestamp
from schemas.records import RawObject, SourceRecord

PDF_SUFFIXES = (".pdf",)
HTML_SUFFIXES = (".html", ".htm")
#: PDFium is not thread-safe, even across documents; the pipeline fetches items in threads.
_PDFIUM_LOCK = threading.Lock()
_PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?"
                       r"(?:([+\-Zz])(?:(\d{2})'?(?:(\d{2})'?)?)?)?$")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HTML_TIME_META = ("article:published_time", "dcterms.created", "dc.date", "date", "article:modified_time")
_SKIPPED_TAGS = frozenset({"head", "script", "style", "noscript", "template"})
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                        "track", "wbr"})
_BLOCK_TAGS = frozenset({"address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
                         "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
                         "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul"})


class DocumentsConfig(ConnectorConfig):
    """Where the documents are and how to read them.

    ``render_dpi``: resolution of the rendered PDF page images (72 dpi = one pixel per PDF
    point); ``render_pages: false`` keeps text only.  ``max_pages_per_document``: later pages
    are left out (and the record says so).  ``timezone``: IANA zone for document dates without
    an offset.  ``html_encoding``: for pages that declare no charset.  ``pdf_password``: tried
    on encrypted PDFs.
    """

    root: Path
    source: str = Field(default="documents", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    render_pages: bool = True
    render_dpi: float = Field(default=96.0, ge=18, le=600)
    max_pages_per_document: int = Field(default=2000, ge=1)
    timezone: str = "UTC"
    html_encoding: str = "utf-8"
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    pdf_password: SecretStr | None = None


# -- pure parsing ------------------------------------------------------------------------------------
def parse_pdf_date(value: str, zone: tzinfo) -> datetime:
    """A PDF date string (``D:YYYYMMDDHHmmSS+HH'mm'``, any trailing part optional) as UTC.

    ``Z`` or an offset wins; without one the time is read in ``zone``.  ValueError if it is not
    a PDF date.
    """
    match = _PDF_DATE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a PDF date (D:YYYYMMDDHHmmSS+HH'mm')")
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    naive = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    if sign in ("Z", "z"):
        tz: tzinfo = UTC
    elif sign:
        offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
        tz = timezone(offset if sign == "+" else -offset)
    else:
        tz = zone
    return ensure_utc(naive.replace(tzinfo=tz))


def parse_html_time(value: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date or time from an HTML meta tag as UTC (``zone`` if it has no offset)."""
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return ensure_utc(datetime.combine(date.fromisoformat(text), time_of_day(), tzinfo=zone))
    moment = datetime.fromisoformat(text)
    return ensure_utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=zone))


class _VisibleText(HTMLParser):
    """Collects the visible text, the title, meta tags and ``<img src>`` of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.title = ""
        self.meta: dict[str, str] = {}
        self.images: list[str] = []
        self._skipping: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "meta":
            name = (attributes.get("name") or attributes.get("property") or "").strip().lower()
            if name and "content" in attributes:
                self.meta.setdefault(name, attributes["content"])
        elif tag == "title":
            self._in_title = True
        if tag in _VOID_TAGS:
            if tag == "img" and not self._skipping and attributes.get("src", "").strip():
                self.images.append(attributes["src"].strip())
            if tag in _BLOCK_TAGS:
                self.pieces.append("\n")
            return
        if self._skipping or tag in _SKIPPED_TAGS or "hidden" in attributes:
            self._skipping.append(tag)
        elif tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
        elif tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self._skipping:
            self.pieces.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.pieces).split("\n"))
        return "\n".join(line for line in lines if line)


def html_visible_text(markup: str) -> tuple[str, str, dict[str, str], list[str]]:
    """(visible text, title, meta tags by lower-case name, ``<img src>`` values) of an HTML page."""
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    return parser.text(), " ".join(parser.title.split()), parser.meta, parser.images


def decode_html(data: bytes, default: str) -> tuple[str, str]:
    """(text, encoding) of an HTML file: a BOM, else a ``<meta charset>``, else ``default``.

    UnicodeDecodeError or LookupError (an unknown charset) if it cannot be decoded as declared.
    """
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding), encoding
    match = _META_CHARSET.search(data[:4096])
    encoding = match.group(1).decode("ascii") if match else default
    return data.decode(encoding), encoding


# -- the connector -----------------------------------------------------------------------------------
class DocumentsConnector(Connector[DocumentsConfig]):
    """Lists a folder of PDFs and HTML pages; one item per document, one record per page."""

    name = "documents"
    config_class = DocumentsConfig
    requires = ("pypdfium2",)
    extra = "documents"

    def __init__(self, config: DocumentsConfig) -> None:
        super().__init__(config)
        self.root = config.root.expanduser().resolve()
        try:
            self.zone = ZoneInfo(config.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {config.timezone!r}; use an IANA name such as 'UTC' or "
                              "'Europe/Berlin'", setting="timezone") from None
        try:
            "".encode(config.html_encoding)
        except LookupError:
            raise ConfigError(f"unknown encoding {config.html_encoding!r}; use a Python codec name such as "
                              "'utf-8' or 'cp1252'", setting="html_encoding") from None

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"document folder {self.root} does not exist or is not a directory; set the option "
                              "'root' to a folder of .pdf and .html files", setting="root")

    def list_items(self, state: State, window: Window) -> list[Item]:
        """New documents after ``state``, inside ``window`` by modification time (UTC), by source id."""
        self.check()
        items = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                suffix = os.path.splitext(name)[1].lower()
                if name.startswith(".") or suffix not in PDF_SUFFIXES + HTML_SUFFIXES:
                    continue
                path = Path(dirpath, name)
                rel = path.relative_to(self.root).as_posix()
                mtime_ns = path.stat().st_mtime_ns
                if not window.contains_mtime_ns(mtime_ns):
                    continue
                item = Item(source_id=rel, cursor=mtime_ns,
                            ref={"path": rel, "kind": "pdf" if suffix in PDF_SUFFIXES else "html"})
                if state.is_new(item):
                    items.append(item)
        return sorted(items, key=lambda item: item.source_id)

    def fetch(self, item: Item) -> list[SourceRecord]:
        """The document's records: one per PDF page (in page order) or one for an HTML page."""
        rel: str = item.ref["path"]
        try:
            data = (self.root / rel).read_bytes()
        except OSError as exc:
            raise BadRecordError(f"{rel}: cannot read file ({exc.strerror})", source_id=item.source_id) from None
        if item.ref.get("kind") == "pdf":
            return self._pdf(item, rel, data)
        return [self._html(item, rel, data)]

    def _mtime(self, rel: str) -> datetime:
        return from_timestamp((self.root / rel).stat().st_mtime)

    # -- PDF ---------------------------------------------------------------------------------------
    def _pdf(self, item: Item, rel: str, data: bytes) -> list[SourceRecord]:
        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"{rel}: {reason}", source_id=item.source_id, payload=data)

        if b"%PDF-" not in data[:1024]:
            raise bad("not a PDF (no %PDF- header); remove it or give it the right suffix")
        if b"%%EOF" not in data[-1024:]:
            raise bad("truncated PDF (no %%EOF end marker); copy the file again")
        with _PDFIUM_LOCK:
            pages, info, total = self._read_pdf(data, bad)
        event_time, origin, notes = self._pdf_time(info, rel)
        common: dict[str, Any] = {"path": rel, "format": "pdf", "pages": total, **notes}
        if info.get("Title"):
            common["title"] = info["Title"]
        if total > len(pages):
            common["pages_left_out"] = total - len(pages)
        records = []
        for number, (text, image, width, height) in enumerate(pages, 1):
            objects = [RawObject("image", image, "image/png")] if image is not None else []
            objects.append(RawObject("document", data, "application/pdf"))
            metadata = {**common, "page": number, "width_pt": width, "height_pt": height}
            if image is not None:
                metadata["dpi"] = self.config.render_dpi
            records.append(SourceRecord(
                source=self.source, source_id=f"{item.source_id}/page-{number}", event_time=event_time,
                objects=tuple(objects), text=text or None, keys={"document_id": item.source_id},
                metadata=metadata, event_time_origin=origin))
        return records

    def _read_pdf(self, data: bytes, bad: Callable[[str], BadRecordError],
                  ) -> tuple[list[tuple[str, bytes | None, float, float]], dict[str, Any], int]:
        """Text, PNG and size (points) of each page read, the info dictionary and the page count.

        Call it holding :data:`_PDFIUM_LOCK`.
        """
        import pypdfium2 as pdfium

        password = self.config.pdf_password.get_secret_value() if self.config.pdf_password else None
        try:
            document = pdfium.PdfDocument(data, password=password)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
                raise bad("encrypted PDF and no (or the wrong) password; set pdf_password or supply an "
                          "unencrypted copy") from None
            raise bad(f"corrupt PDF ({exc}); re-export or replace the file") from None
        try:
            total = len(document)
            if total == 0:
                raise bad("PDF has no pages")
            info: dict[str, Any] = {k: v for k, v in document.get_metadata_dict().items() if v}
            pages = []
            for index in range(min(total, self.config.max_pages_per_document)):
                page = document[index]
                try:
                    textpage = page.get_textpage()
                    try:
                        text = textpage.get_text_range()
                    finally:
                        textpage.close()
                    width, height = page.get_size()
                    image = self._render(page) if self.config.render_pages else None
                finally:
                    page.close()
                lines = (line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
                pages.append(("\n".join(line for line in lines if line), image, round(width, 2), round(height, 2)))
            return pages, info, total
        except pdfium.PdfiumError as exc:
            raise bad(f"cannot read a page ({exc}); re-export or replace the file") from None
        finally:
            document.close()

    def _render(self, page: Any) -> bytes:
        bitmap = page.render(scale=self.config.render_dpi / 72)
        try:
            image = bitmap.to_pil()
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue()
        finally:
            bitmap.close()

    def _pdf_time(self, info: dict[str, Any], rel: str) -> tuple[datetime, str, dict[str, Any]]:
        """The document's time (UTC), where it came from, and notes on dates that did not parse."""
        notes: dict[str, Any] = {}
        for key, origin in (("CreationDate", "pdf_creation_date"), ("ModDate", "pdf_mod_date")):
            value = info.get(key)
            if not value:
                continue
            try:
                return parse_pdf_date(str(value), self.zone), origin, notes
            except ValueError as exc:
                notes.setdefault("unparsed_dates", []).append(f"{key}: {exc}")
        return self._mtime(rel), "mtime", notes

    # -- HTML --------------------------------------------------------------------------------------
    def _html(self, item: Item, rel: str, data: bytes) -> SourceRecord:
        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"{rel}: {reason}", source_id=item.source_id, payload=data)

        try:
            markup, encoding = decode_html(data, self.config.html_encoding)
        except LookupError as exc:
            raise bad(f"declares an unknown charset ({exc}); fix its <meta charset>") from None
        except UnicodeDecodeError as exc:
            raise bad(f"not valid {exc.encoding} text ({exc.reason} at byte {exc.start}); declare the right "
                      "<meta charset> or set html_encoding") from None
        if "\x00" in markup:
            raise bad("contains NUL characters: not an HTML text file (or in an undeclared UTF-16/32 encoding)")
        text, title, meta, sources = html_visible_text(markup)
        objects = [RawObject("document", data, "text/html")]
        metadata: dict[str, Any] = {"path": rel, "format": "html", "encoding": encoding}
        if title:
            metadata["title"] = title
        seen: set[str] = set()
        for src in sources:
            kind, found = self._image(rel, src)
            if kind == "image" and isinstance(found, tuple):
                path, image, media_type = found
                if path in seen:
                    continue
                seen.add(path)
                count = sum(1 for o in objects if o.role.startswith("image"))
                objects.append(RawObject("image" if count == 0 else f"image-{count}", image, media_type))
                metadata.setdefault("images", []).append(path)
            else:
                metadata.setdefault(kind, []).append(src if found is None else f"{src} ({found})")
        if not text and len(objects) == 1:
            raise bad("no visible text and no local images; is it an empty page or a frameset?")
        event_time, origin = self._mtime(rel), "mtime"
        for name in _HTML_TIME_META:
            if meta.get(name):
                try:
                    event_time, origin = parse_html_time(meta[name], self.zone), f"meta:{name}"
                    break
                except ValueError:
                    metadata.setdefault("unparsed_dates", []).append(f"{name}: {meta[name]!r}")
        return SourceRecord(source=self.source, source_id=item.source_id, event_time=event_time,
                            objects=tuple(objects), text=text or None, keys={"document_id": item.source_id},
                            metadata=metadata, event_time_origin=origin)

    def _image(self, page_rel: str, src: str) -> tuple[str, tuple[str, bytes, str] | str | None]:
        """Classify an ``<img src>``: ("image", (path, bytes, media type)) for a local file, else
        ("remote_images"|"inline_images"|"missing_images", note)."""
        parts = urlsplit(src)
        if parts.scheme in ("http", "https") or src.startswith("//"):
            return "remote_images", None
        if parts.scheme == "data":
            return "inline_images", None
        if parts.scheme or not parts.path:
            return "missing_images", "not a local file"
        target = unquote(parts.path)
        base = PurePosixPath("/") if target.startswith("/") else PurePosixPath("/", page_rel).parent
        path = (self.root / str(base / target).lstrip("/")).resolve()
        if not path.is_relative_to(self.root):
            return "missing_images", "outside the root"
        if not path.is_file():
            return "missing_images", None
        size = path.stat().st_size
        if size > self.config.max_image_bytes:
            return "missing_images", f"{size} bytes, over max_image_bytes"
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return "image", (path.relative_to(self.root).as_posix(), path.read_bytes(), media_type)
