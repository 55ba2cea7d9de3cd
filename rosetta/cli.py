"""The ``rosetta`` command line.  Start-up imports only the standard library;
each command imports what it needs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def cmd_demo(args: argparse.Namespace) -> int:
    from rosetta.demo import run_demo

    return run_demo(runs=args.runs)


def cmd_samples(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rosetta.samples import write_sample_folder

    written, kept = write_sample_folder(Path(args.dest))
    print(f"sample folder {args.dest}: {written} files written, {kept} already there")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from rosetta.pipelines.ingest import IngestPipeline
    from rosetta.pipelines.settings import image_folder_options, ingest_settings

    with IngestPipeline(ingest_settings(options=image_folder_options(source_dir=args.source_dir))) as pipeline:
        _print_json(pipeline.check())
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from feature_store import FeatureStore

    with FeatureStore.from_env() as fs:
        found = fs.get_online_features(args.sample_ids)
    out: dict[str, dict[str, Any] | None] = {}
    for sample_id, features in found.items():
        if features is None:
            out[sample_id] = None
            continue
        out[sample_id] = {
            "vectors": {m: (v if args.full else [round(x, 4) for x in v[:4]] + [f"... {len(v)} dims"])
                        for m, v in features.vectors.items()},
            "encoders": {m: e.get("key") for m, e in features.encoders.items()},
            "payload": features.payload,
        }
    _print_json(out)
    return 0 if all(v is not None for v in found.values()) else 1


def cmd_search(args: argparse.Namespace) -> int:
    from feature_store import FeatureStore
    from rosetta.pipelines.settings import encoder_configs_from_env
    from transforms.encoders import load_text_encoder

    text_config, _ = encoder_configs_from_env()
    with FeatureStore.from_env() as fs:
        hits = fs.search_text(args.query, load_text_encoder(text_config), limit=args.limit)
    for hit in hits:
        print(f"{hit.score:.3f}  {hit.sample_id:32s}  {hit.payload.get('text') or ''}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from feature_store import FeatureStore
    from rosetta.pipelines.ingest import latest_summary

    with FeatureStore.from_env() as fs:
        summary = latest_summary(fs.objects)
    if summary is None:
        print("no run summaries yet: run the ingestion DAG first (make demo)")
        return 1
    _print_json(summary)
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from feature_store import FeatureStore

    with FeatureStore.from_env() as fs:
        table = fs.quarantine.read() if args.quarantine else fs.manifest.read()
    rows = table.to_pylist()
    for row in rows[: args.limit]:
        print(json.dumps(row, default=str, sort_keys=True))
    print(f"# {len(rows)} rows", file=sys.stderr)
    return 0


def cmd_connector_list(args: argparse.Namespace) -> int:
    from connectors.sdk.registry import available_connectors

    for name, target in available_connectors().items():
        print(f"{name:16s} {target}")
    return 0


def cmd_connector_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rosetta.demo import project_dir
    from rosetta.scaffold import scaffold_connector

    root = Path(args.dir) if args.dir else project_dir()
    for path in scaffold_connector(args.name, root, register=not args.no_register):
        print(f"wrote {path}")
    print(f"next: edit connectors/{args.name}.py, then run pytest tests/contract -k {args.name} "
          f"tests/unit/test_{args.name}.py (guide: docs/connectors.md)")
    return 0


def _registry() -> Any:
    from feature_store.config import FeatureStoreConfig
    from feature_store.object_store import open_object_store
    from feature_store.registry import Registry

    return Registry(open_object_store(FeatureStoreConfig.from_env().object_store))


def _features_file(given: str | None) -> Any:
    import os
    from pathlib import Path

    from rosetta.demo import project_dir

    return Path(given or os.environ.get("ROSETTA_FEATURES_FILE") or project_dir() / "features.yaml")


def cmd_features_apply(args: argparse.Namespace) -> int:
    from feature_store.registry import RemovalNotConfirmed
    from schemas.features import load_definitions

    definitions = load_definitions(_features_file(args.file))
    registry = _registry()
    plan = registry.plan(definitions)
    for line in plan.lines():
        print(line)
    if args.dry_run or not plan.has_changes:
        print("dry run: nothing applied" if args.dry_run else "the registry already holds these definitions")
        return 0
    confirmed = args.yes
    if plan.removals and not confirmed and sys.stdin.isatty():
        answer = input(f"remove {len(plan.removals)} definition(s) from the registry (stored values are kept)? "
                       "[y/N] ")
        confirmed = answer.strip().lower() in ("y", "yes")
    try:
        registry.apply(definitions, confirm_removals=confirmed)
    except RemovalNotConfirmed as exc:
        print(f"rosetta: nothing applied: {exc}", file=sys.stderr)
        return 3
    print(f"applied to {registry.store.uri_for('registry/features.json')}")
    return 0


def cmd_features_list(args: argparse.Namespace) -> int:
    views = _registry().listing()
    if not views:
        print("no feature views; define them in features.yaml and run 'rosetta features apply'")
        return 0
    print(f"{'view':<24} {'kind':<14} {'entities':<16} {'version':<14} {'versions':>8}  encoder")
    for view, versions in views:
        encoder = f"{view.encoder.name} ({view.dimension} dims)" if view.encoder else ""
        print(f"{view.name:<24} {view.kind:<14} {','.join(view.entities):<16} {view.version:<14} "
              f"{versions:>8}  {encoder}")
    return 0


def cmd_features_describe(args: argparse.Namespace) -> int:
    registry = _registry()
    view = registry.view(args.name, args.version)
    _print_json({"definition": view.model_dump(mode="json"), "version": view.version,
                 "versioned_name": view.versioned_name, "versions": registry.versions(args.name)})
    return 0


def _moment(text: str) -> Any:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_features_materialize(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from feature_store import FeatureStore
    from feature_store.materialize import materialize
    from feature_store.offline import join_keys

    with FeatureStore.from_env() as fs:
        view = fs.registry.view(args.name, args.version)
        keys = join_keys(view, {e.name: tuple(e.join_keys) for e in fs.registry.entities()})
        done = materialize(view, keys, fs.offline, fs.collections, fs.objects, start=_moment(args.start),
                           end=_moment(args.end), chunk=timedelta(hours=args.chunk_hours), force=args.force)
        if args.publish:
            done["replaced"] = fs.collections.publish(view)
            done["live"] = fs.collections.live(view.name)
    _print_json({"view": view.versioned_name, **done})
    return 0


def cmd_features_publish(args: argparse.Namespace) -> int:
    from feature_store import FeatureStore

    with FeatureStore.from_env() as fs:
        view = fs.registry.view(args.name, args.version)
        previous = fs.collections.publish(view)
        _print_json({"view": view.name, "live": fs.collections.live(view.name), "previous": previous,
                     "points": fs.collections.count(view)})
    return 0


def cmd_features_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from feature_store import FeatureStore

    query: Any = Path(args.image).read_bytes() if args.image else args.query
    if query is None:
        print("rosetta: give a text query or --image FILE", file=sys.stderr)
        return 2
    filters = dict(f.split("=", 1) for f in args.filter)
    with FeatureStore.from_env() as fs:
        hits = fs.search_view(args.name, query, limit=args.limit, filters=filters or None)
    for hit in hits:
        print(json.dumps({"score": round(hit.score or 0.0, 4), **hit.payload}, sort_keys=True, default=str))
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_airflow(args: argparse.Namespace) -> int:
    import signal
    import time

    from rosetta.demo import local_airflow_env, project_dir
    from rosetta.devservices.airflow import AirflowDeployment

    root = project_dir()
    env = {k: v for k, v in local_airflow_env(root).items() if k.startswith("ROSETTA_")}
    workers = {"cpu": "cpu", "gpu": "gpu"} if args.executor == "CeleryExecutor" else None
    deployment = AirflowDeployment(root / ".airflow-deploy", database_url=args.database_url, port=args.port,
                                   executor=args.executor, env=env, celery_workers=workers,
                                   broker_url=args.broker_url)
    print(f"starting Airflow ({args.executor}, metadata DB {args.database_url}) ...", flush=True)
    with deployment:
        print(f"Airflow UI and REST API: {deployment.url}  (user admin, password {deployment.password()})")
        print(f"services: {', '.join(deployment.processes)}; logs under {deployment.home / 'logs'}")
        print("pools: gpu, io; DAGs are paused at creation: unpause them in the UI.  Ctrl-C stops everything.",
              flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while all(p.poll() is None for p in deployment.processes.values()):
                time.sleep(2)
            dead = [name for name, p in deployment.processes.items() if p.poll() is not None]
            print(f"rosetta: Airflow {', '.join(dead)} stopped; see {deployment.home / 'logs'}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping Airflow ...")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rosetta", description="Rosetta: multimodal data pipeline and feature store")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="ingest the bundled sample photos through Airflow and look features up")
    demo.add_argument("--runs", type=int, default=1, help="how many times to run the DAG (the second stores nothing)")
    demo.set_defaults(fn=cmd_demo)

    samples = sub.add_parser("samples", help="write the sample photos with caption sidecars into a folder")
    samples.add_argument("dest")
    samples.set_defaults(fn=cmd_samples)

    check = sub.add_parser("check", help="check object store, Qdrant, model paths and source folder settings")
    check.add_argument("--source-dir", default=None)
    check.set_defaults(fn=cmd_check)

    lookup = sub.add_parser("lookup", help="online features (vectors + payload) for sample ids")
    lookup.add_argument("sample_ids", nargs="+", help="sample ids, e.g. demo_photos/chelsea")
    lookup.add_argument("--full", action="store_true", help="print whole vectors")
    lookup.set_defaults(fn=cmd_lookup)

    search = sub.add_parser("search", help="samples whose captions are nearest to a text query")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=5)
    search.set_defaults(fn=cmd_search)

    summary = sub.add_parser("summary", help="summary of the latest ingestion run")
    summary.set_defaults(fn=cmd_summary)

    connector = sub.add_parser("connector", help="connector SDK: list connectors, scaffold a new one")
    connector_sub = connector.add_subparsers(dest="connector_command", required=True)
    connector_sub.add_parser("list", help="known connectors (built-in and plug-in)").set_defaults(
        fn=cmd_connector_list)
    new = connector_sub.add_parser("new", help="scaffold connectors/NAME.py with its contract harness and a test")
    new.add_argument("name")
    new.add_argument("--dir", default=None, help="project root to write into (default: this checkout)")
    new.add_argument("--no-register", action="store_true", help="do not add it to the built-in registry")
    new.set_defaults(fn=cmd_connector_new)

    features = sub.add_parser("features", help="feature registry: apply definitions, list and describe views")
    features_sub = features.add_subparsers(dest="features_command", required=True)
    apply = features_sub.add_parser("apply", help="make the registry hold features.yaml (asks before removing)")
    apply.add_argument("--file", default=None,
                       help="definitions file (default $ROSETTA_FEATURES_FILE or features.yaml)")
    apply.add_argument("--yes", action="store_true", help="confirm removals without asking")
    apply.add_argument("--dry-run", action="store_true", help="print the plan only")
    apply.set_defaults(fn=cmd_features_apply)
    features_sub.add_parser("list", help="feature views with their current version").set_defaults(
        fn=cmd_features_list)
    describe = features_sub.add_parser("describe", help="one view's definition and versions")
    describe.add_argument("name")
    describe.add_argument("--version", default=None)
    describe.set_defaults(fn=cmd_features_describe)
    mat = features_sub.add_parser("materialize", help="offline -> online for an event-time range, in chunks "
                                  "(resumable: a range done is skipped unless --force)")
    mat.add_argument("name")
    mat.add_argument("--start", required=True, help="ISO 8601 (UTC when no offset)")
    mat.add_argument("--end", required=True, help="ISO 8601, exclusive")
    mat.add_argument("--chunk-hours", type=float, default=24.0)
    mat.add_argument("--version", default=None, help="a version to build (default: the current one)")
    mat.add_argument("--force", action="store_true", help="redo the range from --start")
    mat.add_argument("--publish", action="store_true", help="then serve this version behind the view's alias")
    mat.set_defaults(fn=cmd_features_materialize)
    publish = features_sub.add_parser("publish", help="serve a version behind the view's alias (atomic swap; "
                                      "publishing the previous version rolls back)")
    publish.add_argument("name")
    publish.add_argument("--version", default=None)
    publish.set_defaults(fn=cmd_features_publish)
    fsearch = features_sub.add_parser("search", help="nearest entities of an embedding view to a text or image")
    fsearch.add_argument("name")
    fsearch.add_argument("query", nargs="?", default=None, help="a text (text views)")
    fsearch.add_argument("--image", default=None, help="an image file (image views)")
    fsearch.add_argument("--limit", type=int, default=5)
    fsearch.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                         help="payload filter, e.g. source=demo_photos (repeatable)")
    fsearch.set_defaults(fn=cmd_features_search)

    airflow = sub.add_parser("airflow", help="run Airflow's api-server, scheduler, dag-processor and triggerer here "
                             "(PostgreSQL metadata DB; what make airflow runs)")
    airflow.add_argument("--database-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/rosetta_airflow")
    airflow.add_argument("--port", type=int, default=8080)
    airflow.add_argument("--executor", default="LocalExecutor", choices=["LocalExecutor", "CeleryExecutor"],
                         help="CeleryExecutor also starts two workers here, on the cpu and gpu queues")
    airflow.add_argument("--broker-url", default="redis://127.0.0.1:6379/0", help="Celery broker (CeleryExecutor)")
    airflow.set_defaults(fn=cmd_airflow)

    manifest = sub.add_parser("manifest", help="print manifest rows (or the quarantine ledger) as JSON lines")
    manifest.add_argument("--quarantine", action="store_true")
    manifest.add_argument("--limit", type=int, default=50)
    manifest.set_defaults(fn=cmd_manifest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rosetta.core.errors import ConfigError, RosettaError

    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"rosetta: configuration error: {exc}", file=sys.stderr)
        return 2
    except RosettaError as exc:
        print(f"rosetta: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
