"""Annotation and metadata tables (Parquet, CSV, JSON Lines) as a source.

One record per row: ``id_column`` is the stable source id, ``time_column`` the
event time (naive times are read in the configured ``timezone``, then kept in
UTC), ``text_column`` the text, ``image_column`` an optional path to an image
(relative to ``image_base_dir``, default the table's folder; ``file://`` URLs
work too) whose bytes are attached.  Files come from a local path, a folder, a
glob (``annotations/**/*.csv``) or ``s3://bucket/prefix/*.parquet`` (any
S3-compatible store through ``s3_endpoint_url``).

The row-to-item rules (:class:`RowMapping`) are shared by every table-shaped
source (SQL rows, REST records), so they all reject the same things the same
way: a missing id or time, an unparseable time, empty text, a cell that is not
UTF-8.  Such rows become problem items (quarantined with the reason, the rest
goes on); a file that cannot be parsed at all becomes one problem item naming
the file.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from connectors.sdk.rows import (
    RowMapping,
    problem_error,
    select_new,
    zone_from_name,
)
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from schemas.records import RawObject, SourceRecord

FORMAT_SUFFIXES: dict[str, str] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv",
                                   ".jsonl": "jsonl", ".ndjson": "jsonl"}
_GLOB_CHARS = set("*?[")


# -- the connector ---------------------------------------------------------------------------------
class TabularConfig(ConnectorConfig):
    """Where the tables are and which columns mean what.

    ``path`` is a file, a folder (every table file in it), a glob or an
    ``s3://bucket/key`` (glob allowed); ``format`` is taken from the suffix
    unless set.  ``timezone`` (IANA) applies to times without an offset.
    ``key_columns`` maps an entity key name to its column, e.g.
    ``{"patient_id": "patient"}``; ``metadata_columns`` are copied as they are.
    """

    path: str = Field(min_length=1)
    source: str = Field(default="tabular", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    format: Literal["auto", "parquet", "csv", "jsonl"] = "auto"
    id_column: str
    time_column: str
    cursor: Literal["time", "id"] = "time"
    text_column: str | None = None
    require_text: bool = True
    image_column: str | None = None
    image_base_dir: str | None = None
    key_columns: dict[str, str] = Field(default_factory=dict)
    metadata_columns: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    csv_delimiter: str = Field(default=",", min_length=1, max_length=1)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None


@dataclass(frozen=True)
class _TableFile:
    name: str  # what messages and refs show: a local path or s3://bucket/key
    fs_path: str  # the path inside its pyarrow filesystem
    format: str


class TabularConnector(Connector[TabularConfig]):
    """Reads annotation tables row by row; incremental by the time column (or an integer id).

    Listing reads every matching file (annotation tables are small next to
    the images they describe) and keeps the parsed row in each item's ``ref``,
    so :meth:`fetch` only reads the image, if any.
    """

    name = "tabular"
    config_class = TabularConfig
    requires = ("pyarrow",)

    def __init__(self, config: TabularConfig) -> None:
        super().__init__(config)
        self.zone = zone_from_name(config.timezone)
        self.mapping = RowMapping(
            id_field=config.id_column, time_field=config.time_column, zone=self.zone,
            text_field=config.text_column, require_text=config.require_text, image_field=config.image_column,
            key_fields=dict(config.key_columns), metadata_fields=tuple(config.metadata_columns),
            cursor=config.cursor)
        self._s3: Any = None

    @property
    def on_s3(self) -> bool:
        return self.config.path.startswith("s3://")

    def check(self) -> None:
        if not self._files():
            raise ConfigError(f"no table files match {self.config.path!r} (suffixes: "
                              f"{', '.join(sorted(FORMAT_SUFFIXES))}); set path to a file, folder or glob",
                              setting="path")

    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """Rows newer than ``state`` and with an event time inside ``window``, in (cursor, id) order."""
        files = self._files()
        if not files:
            self.check()
        items: list[Item] = []
        for table_file in files:
            items.extend(self._file_items(table_file))
        return select_new(items, state or State(), window or Window())

    def fetch(self, item: Item) -> list[SourceRecord]:
        where = f"{item.ref.get('file')} row {item.ref.get('row')}"
        if item.problem is not None:
            if item.ref.get("row") is None:  # the whole file: keep its bytes
                raise BadRecordError(f"{item.ref.get('file')}: {item.problem}", source_id=item.source_id,
                                     payload=self._read_payload(item.ref.get("file", "")))
            raise problem_error(item, where)
        objects = []
        if item.ref.get("image"):
            objects.append(self._read_image(item, where))
        return [self.mapping.record(self.config.source, item, objects)]

    # -- files -------------------------------------------------------------------------------------
    def _filesystem(self) -> Any:
        from pyarrow import fs

        if not self.on_s3:
            return fs.LocalFileSystem()
        if self._s3 is None:
            secret = self.config.aws_secret_access_key
            endpoint = urlparse(self.config.s3_endpoint_url or "")
            self._s3 = fs.S3FileSystem(
                access_key=self.config.aws_access_key_id, secret_key=secret.get_secret_value() if secret else None,
                region=self.config.s3_region, endpoint_override=endpoint.netloc or None,
                scheme=endpoint.scheme or "https", connect_timeout=10, request_timeout=30,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=2))
        return self._s3

    def _format(self, path: str) -> str | None:
        if self.config.format != "auto":
            return self.config.format
        return FORMAT_SUFFIXES.get(PurePosixPath(path).suffix.lower())

    def _files(self) -> list[_TableFile]:
        """The table files ``path`` names, sorted (deterministic listings)."""
        if self.on_s3:
            return self._s3_files()
        pattern = os.path.expanduser(self.config.path)
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "**", "*")
        paths = sorted(glob.glob(pattern, recursive=True)) if _GLOB_CHARS & set(pattern) else [pattern]
        found = []
        for path in paths:
            fmt = self._format(path)
            if os.path.isfile(path) and fmt is not None:
                absolute = os.path.abspath(path)
                found.append(_TableFile(absolute, absolute, fmt))
        return found

    def _s3_files(self) -> list[_TableFile]:
        from pyarrow import fs

        filesystem = self._filesystem()
        target = self.config.path.removeprefix("s3://").rstrip("/")
        if _GLOB_CHARS & set(target):
            cut = min(target.index(c) for c in _GLOB_CHARS if c in target)
            base, pattern = target[:cut].rsplit("/", 1)[0], target
        else:
            base, pattern = target, None
        try:
            info = filesystem.get_file_info(base)
            if info.type == fs.FileType.File:
                infos = [info]
            elif info.type == fs.FileType.NotFound:
                infos = []
            else:
                infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
        except OSError as exc:
            raise _s3_error(exc, self.config.path) from None
        found = []
        for entry in sorted(infos, key=lambda e: e.path):
            if entry.type != fs.FileType.File or (pattern and not fnmatch.fnmatchcase(entry.path, pattern)):
                continue
            fmt = self._format(entry.path)
            if fmt is not None:
                found.append(_TableFile(f"s3://{entry.path}", entry.path, fmt))
        return found

    def _file_items(self, table_file: _TableFile) -> list[Item]:
        try:
            rows = self._read_rows(table_file)
        except (RetriableError, ConfigError):
            raise
        except Exception as exc:
            reason = f"cannot parse {table_file.format} file ({type(exc).__name__}: {str(exc)[:300]}); fix or " \
                     "re-export the file, or move it out of the source path"
            return [Item(source_id=f"file:{table_file.name}", ref={"file": table_file.name, "row": None},
                         problem=reason)]
        items = []
        for index, row in enumerate(rows):
            ref = {"file": table_file.name, "row": index}
            if isinstance(row, _BadRow):
                items.append(Item(source_id=row.row_id or f"{table_file.name}#line{row.line}", problem=row.reason,
                                  ref={**ref, "raw": row.raw}))
            else:
                items.append(self.mapping.to_item(row, fallback_id=f"{table_file.name}#row{index}", ref=ref))
        return items

    def _read_rows(self, table_file: _TableFile) -> list[dict[str, Any] | _BadRow]:
        """The file's rows as dicts, or :class:`_BadRow` for a line that is not a row.

        CSV cells stay raw bytes until :class:`RowMapping` decodes them, so one
        cell that is not UTF-8 is one bad row, not a bad file.
        """
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        filesystem = self._filesystem()
        try:
            with filesystem.open_input_stream(table_file.fs_path) as stream:
                data = stream.read()
        except OSError as exc:
            raise _s3_error(exc, table_file.name) if self.on_s3 else exc from None
        if table_file.format == "parquet":
            return pq.read_table(pa.BufferReader(data)).to_pylist()
        if table_file.format == "jsonl":
            return _read_jsonl(data)
        delimiter = "\t" if table_file.name.lower().endswith(".tsv") else self.config.csv_delimiter
        ragged: list[_BadRow] = []

        def keep_ragged(row: Any) -> str:
            fields = next(csv.reader([row.text], delimiter=delimiter), [])
            position = names.index(self.config.id_column) if self.config.id_column in names else -1
            ragged.append(_BadRow(row.number or 0, f"line {row.number} has {row.actual_columns} fields, the header "
                                                   f"has {row.expected_columns}; quote fields holding {delimiter!r}",
                                  row_id=fields[position].strip() if 0 <= position < len(fields) else None,
                                  raw=row.text))
            return "skip"

        header_only = pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda row: "skip")
        names = pa_csv.open_csv(pa.BufferReader(data), parse_options=header_only,
                                convert_options=pa_csv.ConvertOptions(check_utf8=False)).schema.names
        convert = pa_csv.ConvertOptions(column_types={n: pa.binary() for n in names}, check_utf8=False,
                                        strings_can_be_null=False, quoted_strings_can_be_null=False)
        table = pa_csv.read_csv(pa.BufferReader(data), convert_options=convert,
                                read_options=pa_csv.ReadOptions(use_threads=False),  # row numbers for messages
                                parse_options=pa_csv.ParseOptions(delimiter=delimiter,
                                                                  invalid_row_handler=keep_ragged))
        rows: list[dict[str, Any] | _BadRow] = [{k: (v if v else None) for k, v in row.items()}
                                                 for row in table.to_pylist()]
        return rows + list(ragged)

    def _read_payload(self, name: str) -> bytes | None:
        try:
            with self._filesystem().open_input_stream(name.removeprefix("s3://")) as stream:
                data: bytes = stream.read()
                return data
        except OSError:
            return None

    def _read_image(self, item: Item, where: str) -> RawObject:
        from pyarrow import fs

        ref: str = item.ref["image"]
        table_dir = str(PurePosixPath(item.ref["file"].removeprefix("s3://")).parent) if self.on_s3 \
            else os.path.dirname(item.ref["file"])
        parsed = urlparse(ref)
        if parsed.scheme == "file":
            filesystem, path = fs.LocalFileSystem(), unquote(parsed.path)
        elif parsed.scheme in ("http", "https"):
            raise BadRecordError(f"{where}: image {ref!r} is a web URL; the tabular source reads files only (use "
                                 "the rest_api source for images behind HTTP)", source_id=item.source_id)
        elif os.path.isabs(ref):
            filesystem, path = fs.LocalFileSystem(), ref
        else:
            base = self.config.image_base_dir or table_dir
            filesystem = self._filesystem() if self.on_s3 and not os.path.isabs(base) else fs.LocalFileSystem()
            path = str(PurePosixPath(base.removeprefix("s3://")) / ref) if self.on_s3 else os.path.join(base, ref)
        try:
            with filesystem.open_input_stream(path) as stream:
                data: bytes = stream.read()
        except FileNotFoundError:
            raise BadRecordError(f"{where}: image {ref!r} does not exist (looked at {path}); fix the "
                                 f"{self.config.image_column} column or add the file",
                                 source_id=item.source_id) from None
        except IsADirectoryError:
            raise BadRecordError(f"{where}: image {ref!r} is a folder, not a file", source_id=item.source_id) from None
        except OSError as exc:
            if self.on_s3 and "NOT_FOUND" not in str(exc).upper():
                raise _s3_error(exc, path) from None
            raise BadRecordError(f"{where}: cannot read image {ref!r} ({exc})", source_id=item.source_id) from None
        media_type = sniff_image_type(data)
        if media_type is None:
            raise BadRecordError(f"{where}: {ref!r} is not a JPEG, PNG, GIF, WebP, BMP or TIFF image "
                                 f"(guessed {mimetypes.guess_type(ref)[0] or 'unknown type'})",
                                 source_id=item.source_id, payload=data)
        return RawObject("image", data, media_type)

    def close(self) -> None:
        self._s3 = None


@dataclass(frozen=True)
class _BadRow:
    """A line of a table file that is not a row (unparseable JSON, wrong field count)."""

    line: int
    reason: str
    row_id: str | None = None
    raw: str | None = None


def _read_jsonl(data: bytes) -> list[dict[str, Any] | _BadRow]:
    """JSON Lines rows via pyarrow; line by line if pyarrow refuses the file (mixed types, a bad line).

    A line that is not a JSON object becomes a :class:`_BadRow` so the rest of
    the file still loads; if no line is a JSON object the file is bad.
    """
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        return pa_json.read_json(pa.BufferReader(data)).to_pylist()
    except pa.ArrowInvalid:
        pass
    rows: list[dict[str, Any] | _BadRow] = []
    good = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            rows.append(_BadRow(number, f"line {number} is not JSON ({exc}); fix or remove the line",
                                raw=line.decode("utf-8", errors="replace")))
            continue
        if isinstance(value, dict):
            rows.append(value)
            good += 1
        else:
            rows.append(_BadRow(number, f"line {number} is not a JSON object; each line must be one row"))
    if not good:
        raise ValueError("no line is a JSON object")
    return rows


def sniff_image_type(data: bytes) -> str | None:
    """The media type of an image from its first bytes, or None if it is not a known image format."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


def _s3_error(exc: OSError, where: str) -> Exception:
    text = str(exc)
    upper = text.upper()
    if any(s in upper for s in ("ACCESS_DENIED", "INVALIDACCESSKEYID", "SIGNATUREDOESNOTMATCH", "FORBIDDEN")):
        return ConfigError(f"S3 refused access to {where} ({text[:200]}); check the credentials",
                           setting="aws_access_key_id/aws_secret_access_key")
    if "NOSUCHBUCKET" in upper or "NO_SUCH_BUCKET" in upper:
        return ConfigError(f"bucket of {where} does not exist ({text[:200]})", setting="path")
    return RetriableError(f"S3 request for {where} failed ({text[:200]}); retry later")
