"""A DICOM peer over DIMSE (a PACS, a modality, Orthanc) as a source, two ways.

``mode="retrieve"``: the connector is the SCU.  It lists with C-FIND in the Study Root model, walking
study -> series -> image (what strictly hierarchical archives require), and fetches each instance
with C-GET over its own association, proposing the instance's SOP class once per transfer syntax
so the peer sends what it stores without transcoding.

``mode="spool"``: the peer pushes.  :class:`DicomStoreReceiver` (a storage SCP, also a small CLI:
``python -m connectors.dicom_dimse --spool DIR --port 11112 --ae-title ROSETTA``) writes each received
instance atomically as ``<spool>/<SOP Instance UID>.dcm``; the connector lists that folder.

Both modes make the same record as :mod:`connectors.dicom_files` (raw DICOM, PNG, keys, event time
in UTC by the same rules); the source id is the SOP Instance UID.  Incremental state is the set of
committed SOP Instance UIDs under one constant cursor, for the reason :mod:`connectors.dicomweb`
gives (no arrival time in DICOM; content dates are not arrival order; late priors are common).
Windows: in retrieve mode the study's date and time (StudyDate range asked of the peer, refined
here); in spool mode the file's arrival time (its modification time).

Errors: an association the peer rejects, or a peer that cannot be reached, is a ConfigError naming
host, port and both AE titles (during a fetch an unreachable peer is a RetriableError: it answered
when the items were listed); a C-FIND/C-GET that times out or reports "out of resources" is a
RetriableError; a C-GET whose sub-operation failed or that delivers nothing, and an instance that
cannot be parsed, placed in time or decoded, is a BadRecordError.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from connectors.dicom_records import DicomRecordConfig, DicomRecords
from connectors.dicomweb import SEEN_SET_CURSOR, study_date_range, study_moment
from connectors.sdk.base import Connector, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from rosetta.core.timeutil import from_timestamp
from schemas.records import SourceRecord

AE_TITLE = r"^[^\\\x00-\x1f]{1,16}$"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: C-FIND/C-GET statuses that mean "try again later" (out of resources, cancelled).
_RETRIABLE_STATUSES = {0xA700, 0xA701, 0xA702, 0xFE00}
#: SOP classes by UID (pynetdicom.sop_class builds its names at run time, out of a type checker's sight).
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


class DicomDimseConfig(DicomRecordConfig):
    """The peer (retrieve mode) or the spool folder (spool mode).

    ``host``/``port``/``called_ae``: the peer; ``calling_ae``: this side's AE title (the peer must
    accept it).  ``filters``: study-level C-FIND matching keys (keyword -> value, e.g. PatientID,
    AccessionNumber, ModalitiesInStudy; DICOM wildcards allowed).  Timeouts are seconds.  Timezone,
    rendering and de-identification as :class:`~connectors.dicom_records.DicomRecordConfig`.
    """

    mode: Literal["retrieve", "spool"] = "retrieve"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    called_ae: str = Field(default="ANY-SCP", pattern=AE_TITLE)
    calling_ae: str = Field(default="ROSETTA", pattern=AE_TITLE)
    spool_dir: Path | None = None
    filters: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=120.0, gt=0)
    network_timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _mode_has_its_settings(self) -> DicomDimseConfig:
        if self.mode == "retrieve" and (not self.host or self.port is None):
            raise ValueError("mode 'retrieve' needs host and port")
        if self.mode == "spool" and self.spool_dir is None:
            raise ValueError("mode 'spool' needs spool_dir")
        return self


class DicomDimseConnector(Connector[DicomDimseConfig]):
    """C-FIND + C-GET against a peer, or the spool a :class:`DicomStoreReceiver` fills."""

    name = "dicom_dimse"
    config_class = DicomDimseConfig
    requires = ("pynetdicom", "pydicom", "numpy", "PIL")
    extra = "dicom"

    def __init__(self, config: DicomDimseConfig) -> None:
        super().__init__(config)
        self.reader = DicomRecords(config)
        from pydicom.datadict import tag_for_keyword

        unknown = [keyword for keyword in config.filters if tag_for_keyword(keyword) is None]
        if unknown:
            raise ConfigError(f"unknown DICOM keywords in filters: {', '.join(unknown)}; use keywords such as "
                              "PatientID or AccessionNumber", setting="filters")

    @property
    def peer(self) -> str:
        config = self.config
        return f"{config.called_ae}@{config.host}:{config.port} (calling AE {config.calling_ae})"

    # -- associations -------------------------------------------------------------------------------
    def _ae(self) -> Any:
        from pynetdicom import AE

        config = self.config
        ae = AE(ae_title=config.calling_ae)
        ae.connection_timeout = config.connect_timeout_s
        ae.acse_timeout = config.acse_timeout_s
        ae.dimse_timeout = config.dimse_timeout_s
        ae.network_timeout = config.network_timeout_s
        return ae

    def _associate(self, ae: Any, *, during_fetch: bool = False, **kwargs: Any) -> Any:
        config = self.config
        # Probe TCP first: pynetdicom 3.0.4 leaks its socket when the connect is refused.
        reachable = True
        try:
            socket.create_connection((str(config.host), int(config.port or 0)),
                                     timeout=config.connect_timeout_s).close()
        except OSError:
            reachable = False
        if reachable:
            assoc = ae.associate(config.host, config.port, ae_title=config.called_ae, **kwargs)
            if assoc.is_established:
                return assoc
            if assoc.is_rejected:
                raise ConfigError(f"DICOM peer {self.peer} rejected the association; check host, port, called_ae "
                                  "and that the peer knows calling_ae", setting="called_ae")
        if during_fetch:
            raise RetriableError(f"DICOM peer {self.peer} could not be reached or aborted the association; "
                                 "retry later")
        raise ConfigError(f"DICOM peer {self.peer} cannot be reached or aborted the association; check host and "
                          "port", setting="host")

    def check(self) -> None:
        """Spool: the folder exists.  Retrieve: an association for C-FIND is accepted and C-ECHO answers."""
        self.reader.check()
        if self.config.mode == "spool":
            if self.config.spool_dir is None or not self.config.spool_dir.is_dir():
                raise ConfigError(f"spool folder {self.config.spool_dir} is not a directory; create it or start "
                                  "the receiver", setting="spool_dir")
            return
        ae = self._ae()
        ae.add_requested_context(VERIFICATION)
        ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = self._associate(ae)
        try:
            if not any(cx.abstract_syntax == STUDY_ROOT_FIND
                       for cx in assoc.accepted_contexts):
                raise ConfigError(f"DICOM peer {self.peer} does not offer Study Root C-FIND to this AE; enable "
                                  "queries for calling_ae on the peer", setting="calling_ae")
            status = assoc.send_c_echo()
            if not status or status.Status != 0x0000:
                raise ConfigError(f"DICOM peer {self.peer} did not answer C-ECHO", setting="host")
        finally:
            assoc.release()

    # -- listing ---------------------------------------------------------------------------------------
    def list_items(self, state: State, window: Window) -> list[Item]:
        """Instances not yet committed (by SOP Instance UID) inside ``window``, in UID order."""
        items = self._spool_items(window) if self.config.mode == "spool" else self._peer_items(window)
        unique = {item.source_id: item for item in items}
        return [unique[uid] for uid in sorted(unique) if state.is_new(unique[uid])]

    def _spool_items(self, window: Window) -> Iterator[Item]:
        self.check()
        assert self.config.spool_dir is not None
        for path in sorted(self.config.spool_dir.glob("*.dcm")):
            try:
                arrived = from_timestamp(path.stat().st_mtime)
            except OSError:  # removed while listing
                continue
            if window.bounded and not window.contains(arrived):
                continue
            # the receiver names files by the original SOP Instance UID: the id is its replacement
            yield Item(source_id=self.reader.public_uid(path.stem), cursor=SEEN_SET_CURSOR,
                       ref=self.reader.seal({"path": path.name}))

    def _peer_items(self, window: Window) -> Iterator[Item]:
        ae = self._ae()
        ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = self._associate(ae)
        try:
            study_keys: dict[str, str] = {"StudyInstanceUID": "", "StudyDate": study_date_range(window, self.reader)
                                          or "", "StudyTime": "", "TimezoneOffsetFromUTC": ""}
            study_keys.update(self.config.filters)
            for study in list(self._find(assoc, "STUDY", study_keys)):
                study_uid = str(study.get("StudyInstanceUID", "") or "")
                if not study_uid:
                    continue
                if window.bounded:
                    moment = study_moment(self.reader, str(study.get("StudyDate", "") or ""),
                                          str(study.get("StudyTime", "") or ""),
                                          str(study.get("TimezoneOffsetFromUTC", "") or ""))
                    if moment is None or not window.contains(moment):
                        continue
                for series in list(self._find(assoc, "SERIES", {"StudyInstanceUID": study_uid,
                                                                "SeriesInstanceUID": ""})):
                    series_uid = str(series.get("SeriesInstanceUID", "") or "")
                    if not series_uid:
                        continue
                    for image in list(self._find(assoc, "IMAGE", {
                            "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                            "SOPInstanceUID": "", "SOPClassUID": ""})):
                        sop = str(image.get("SOPInstanceUID", "") or "")
                        if sop:
                            yield Item(source_id=self.reader.public_uid(sop), cursor=SEEN_SET_CURSOR,
                                       ref=self.reader.seal({"study": study_uid, "series": series_uid, "sop": sop,
                                                             "sop_class": str(image.get("SOPClassUID", "") or "")}))
        finally:
            assoc.release()

    def _find(self, assoc: Any, level: str, keys: dict[str, str]) -> Iterator[Any]:
        from pydicom.dataset import Dataset
        query = Dataset()
        query.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(query, keyword, value)
        for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
            code = int(status.Status) if status and "Status" in status else None
            if code is None:
                raise RetriableError(f"C-FIND at {level} level on {self.peer} got no answer (timeout or abort); "
                                     "retry later")
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    yield identifier
            elif code in _RETRIABLE_STATUSES:
                raise RetriableError(f"C-FIND at {level} level on {self.peer} failed with status 0x{code:04X} "
                                     "(out of resources or cancelled); retry later")
            elif code != 0x0000:
                raise ConfigError(f"C-FIND at {level} level on {self.peer} failed with status 0x{code:04X}; check "
                                  f"filters {sorted(self.config.filters)}", setting="filters")

    # -- fetching -------------------------------------------------------------------------------------
    def fetch(self, item: Item) -> list[SourceRecord]:
        """The instance (from the spool, or by C-GET from the peer) as a record."""
        ref = self.reader.unseal(item.ref)
        if self.config.mode == "spool":
            assert self.config.spool_dir is not None
            label = f"spooled instance {item.source_id}"
            try:
                path = self.config.spool_dir / ref["path"]
                data, arrived = path.read_bytes(), from_timestamp(path.stat().st_mtime)
            except OSError as exc:
                raise BadRecordError(f"{label} in {self.config.spool_dir}: {exc.strerror}",
                                     source_id=item.source_id) from None
            return self.reader.records(self.source, item.source_id, data, label, arrived=arrived)
        data = self.c_get(item, ref)
        return self.reader.records(self.source, item.source_id, data, f"C-GET {item.source_id} from {self.peer}")

    def c_get(self, item: Item, ref: dict[str, Any]) -> bytes:
        """The Part 10 bytes of one instance (``ref``: its unsealed reference), by C-GET (Study Root, IMAGE level)."""
        from pydicom.dataset import Dataset
        from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt

        sop_class = ref.get("sop_class") or ""
        sop = ref.get("sop") or item.source_id
        if not sop_class:
            raise BadRecordError(f"{self.peer} did not report the SOP Class UID of {item.source_id}; C-GET cannot "
                                 "negotiate a storage context for it", source_id=item.source_id)
        received: dict[str, bytes] = {}

        def on_store(event: Any) -> int:
            received[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset()
            return 0x0000

        ae = self._ae()
        ae.add_requested_context(STUDY_ROOT_GET)
        for syntax in ALL_TRANSFER_SYNTAXES[:120]:  # one context per syntax: the peer picks the stored one
            ae.add_requested_context(sop_class, syntax)
        assoc = self._associate(ae, during_fetch=True, ext_neg=[build_role(sop_class, scp_role=True)],
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ref["study"]
        query.SeriesInstanceUID = ref["series"]
        query.SOPInstanceUID = sop
        final: int | None = None
        failed = 0
        try:
            for status, _identifier in assoc.send_c_get(query, STUDY_ROOT_GET):
                if status and "Status" in status:
                    final = int(status.Status)
                    failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
        finally:
            assoc.release()
        where = f"C-GET of {item.source_id} from {self.peer}"
        if final is None:
            raise RetriableError(f"{where} got no answer (timeout or abort); retry later")
        if final in _RETRIABLE_STATUSES:
            raise RetriableError(f"{where} failed with status 0x{final:04X} (out of resources or cancelled); "
                                 "retry later")
        if sop not in received:
            reason = f"status 0x{final:04X}, {failed} failed sub-operation(s)" if final or failed else \
                "the peer sent nothing: the instance left the archive after it was listed"
            raise BadRecordError(f"{where} delivered no instance ({reason})", source_id=item.source_id)
        return received[sop]


class DicomStoreReceiver:
    """A storage SCP that writes every instance it receives to ``<spool_dir>/<SOP Instance UID>.dcm``.

    Writes are atomic (a temporary file in ``<spool_dir>/.incoming``, fsync, rename), so a lister
    never sees half a file; an instance received again replaces the old file under the same name.
    Accepts every storage SOP class in every transfer syntax pynetdicom knows, and C-ECHO.
    ``port=0`` takes a free loopback port (see ``port`` after :meth:`start`).
    """

    def __init__(self, spool_dir: str | os.PathLike[str], *, ae_title: str = "ROSETTA", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if not re.match(AE_TITLE, ae_title):
            raise ConfigError(f"AE title {ae_title!r} is not 1-16 printable characters", setting="ae_title")
        self.spool_dir = Path(spool_dir)
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.received = 0
        self._lock = threading.Lock()
        self._server: Any = None

    def _ae(self) -> Any:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        return ae

    def handle_store(self, event: Any) -> int:
        """EVT_C_STORE: write the instance atomically; a DIMSE status (0x0000 stored)."""
        sop = str(event.request.AffectedSOPInstanceUID)
        if not _UID.match(sop) or len(sop) > 64:
            return 0xC000  # cannot understand: not a UID, so not a safe file name
        incoming = self.spool_dir / ".incoming"
        partial = incoming / f"{sop}.{secrets.token_hex(4)}.part"
        try:
            incoming.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as out:
                out.write(event.encoded_dataset())
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.spool_dir / f"{sop}.dcm")
            directory = os.open(self.spool_dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            partial.unlink(missing_ok=True)
            return 0xA700  # out of resources: the sender may retry
        with self._lock:
            self.received += 1
        return 0x0000

    def start(self) -> DicomStoreReceiver:
        """Listen in background threads; returns at once."""
        from pynetdicom import evt

        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._server = self._ae().start_server((self.host, self.port), block=False,
                                               evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        self.port = int(self._server.server_address[1])  # the port the OS gave for port=0
        return self

    def serve_forever(self) -> None:
        """Listen until interrupted (for the CLI)."""
        from pynetdicom import evt

        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._ae().start_server((self.host, self.port), block=True,
                                evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> DicomStoreReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """CLI: run a storage SCP that spools received instances for the ``dicom_dimse`` connector."""
    parser = argparse.ArgumentParser(prog="python -m connectors.dicom_dimse", description=main.__doc__)
    parser.add_argument("--spool", required=True, help="folder the connector lists (spool_dir)")
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--ae-title", default="ROSETTA")
    args = parser.parse_args(argv)
    DicomStoreReceiver(args.spool, ae_title=args.ae_title, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
