"""The ``memberops`` command line. Thin: parses, opens one transaction, calls a service, prints."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

import memberops
from memberops.config import Settings
from memberops.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from memberops.insight.clv_cli import clv_app
from memberops.loyalty.coupon_cli import coupons_app
from memberops.loyalty.reward_cli import rewards_app
from memberops.runtime import Context

if TYPE_CHECKING:
    from memberops.accounts.models import Workspace
    from memberops.audit.service import Actor
    from memberops.demo.clock import DemoWindow
    from memberops.ingest.batch import ImportSummary

app = typer.Typer(help="memberops: member operations platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
users_app = typer.Typer(help="Console operators.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
outbox_app = typer.Typer(help="The transactional outbox.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows an import could not accept: list, show, export, retry.",
                             no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(outbox_app, name="outbox")
app.add_typer(quarantine_app, name="quarantine")
identity_app = typer.Typer(help="OneID: resolve identity records to members, export the identity map.",
                           no_args_is_help=True)
app.add_typer(identity_app, name="identity")
app.add_typer(coupons_app, name="coupons")
app.add_typer(rewards_app, name="rewards")
app.add_typer(clv_app, name="clv")
insight_app = typer.Typer(help="Member insight: traits, RFM, lifecycle, CLV, tags, KOC.", no_args_is_help=True)
tags_app = typer.Typer(help="Tags: operator-defined rules over traits and behaviour.", no_args_is_help=True)
app.add_typer(insight_app, name="insight")
app.add_typer(tags_app, name="tags")
lake_app = typer.Typer(help="The Parquet lake.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")

from memberops.loyalty.cli import loyalty_app  # noqa: E402  (its commands import this module's helpers lazily)

app.add_typer(loyalty_app, name="loyalty")

# Messages are not wrapped at the console's width (80 when output is piped): a line a script greps for, or an
# error's code and reason, stays on one line. Tables still fit the width.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Domain errors → exit codes, most specific first (the HTTP side has the same table in api/errors.py).
EXIT_CODES: list[tuple[type[DomainError], int]] = [(Invalid, 2), (NotFound, 3), (Conflict, 4), (Forbidden, 5)]


@contextmanager
def _context(migrate: bool = True) -> Iterator[Context]:
    """The process context for one command; migrations applied so every command finds its tables."""
    from memberops.db import migrate as migrations

    context = Context.from_settings(Settings())
    try:
        if migrate:
            migrations.upgrade(context.store)
        yield context
    except DomainError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)
        raise typer.Exit(code) from None
    finally:
        context.close()


WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace slug")]
BasedOnOpt = Annotated[int | None, typer.Option(
    "--based-on", min=0, help="the version FILE was edited from: refused (exit 4, settings_conflict) when "
    "another version was saved since")]


@app.command()
def init(
    workspace: WorkspaceOpt = "default",
    name: Annotated[str, typer.Option(help="the brand's display name")] = "My brand",
) -> None:
    """Create the data directory, apply migrations and create the workspace."""
    from memberops.accounts import service as accounts

    with _context() as context, context.store.transaction() as session:
        ws = accounts.ensure_workspace(session, workspace, name=name)
        out.print(f"memberops initialised in {context.settings.data_dir}")
        out.print(f"workspace {ws.slug!r} ({ws.name})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="run a job worker and the scheduler too")] = True,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1,
        help="server processes (PostgreSQL only; about one per core: one process runs Python on one core)",
    )] = 1,
) -> None:
    """Serve the API and the console (and, by default, a job worker and the scheduler)."""
    import uvicorn

    from memberops.accounts import service as accounts
    from memberops.api.app import create_app
    from memberops.logs import uvicorn_log_config

    with _context() as context:
        if workers > 1 and context.store.dialect == "sqlite":
            # SQLite takes one writer at a time and its group commit batches writers inside one process:
            # more processes would only queue for the lock (and lose the batching).
            err.print("[red]error[/red] (workers_need_postgresql): --workers above 1 needs PostgreSQL; "
                      "on SQLite one process serves all writes")
            raise typer.Exit(2)
        with context.store.transaction() as session:
            accounts.ensure_workspace(session)
        out.print(f"console and API on http://{host}:{port}  (API docs: /api/docs)")
        if workers > 1:
            _serve_processes(context, host, port, workers, jobs)
            return
        app_ = create_app(context, run_jobs=jobs)
        # Everything imported so far lives as long as the server: keep it out of every garbage
        # collection (measured: a third less CPU per batch of 1,000 events).
        gc.collect()
        gc.freeze()
        uvicorn.run(app_, host=host, port=port, log_level="info", proxy_headers=True,
                    log_config=uvicorn_log_config())


def _serve_processes(context: Context, host: str, port: int, workers: int, jobs: bool) -> None:
    """``workers`` uvicorn processes sharing the port, each building its app with :func:`served_app`; the job
    worker and scheduler (``jobs``) run once, in this supervising process, so periodic jobs never run twice."""
    import uvicorn

    from memberops.logs import uvicorn_log_config

    consumer = None
    if jobs:
        from memberops.jobs.queue import start_consumer

        consumer = start_consumer(context.queue(), workers=1)
    try:
        # A busy (or slowly importing) process may answer the supervisor's ping late: give it a minute
        # before it is taken for hung and killed, requests in flight and all (uvicorn's default is 5 s).
        uvicorn.run("memberops.cli:served_app", factory=True, workers=workers, host=host, port=port,
                    log_level="info", proxy_headers=True, log_config=uvicorn_log_config(),
                    timeout_worker_healthcheck=60)
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)


def served_app() -> Any:
    """The app one of ``serve --workers N``'s processes serves (settings from the environment, as the
    supervisor read them; its migrations are already applied)."""
    from memberops.api.app import create_app

    app_ = create_app(Context.from_settings(Settings()), run_jobs=False)
    gc.collect()
    gc.freeze()
    return app_


@app.command()
def worker(
    workers: Annotated[int, typer.Option("--workers", "-n", help="worker threads")] = 2,
    periodic: Annotated[bool, typer.Option(help="also run the periodic scheduler")] = True,
) -> None:
    """Run job workers (in addition to the one inside `serve`)."""
    from huey.consumer import Consumer

    with _context() as context:
        out.print(f"worker on {context.settings.redacted()['queue_url']} with {workers} thread(s)")
        Consumer(context.queue(), workers=workers, worker_type="thread", periodic=periodic).run()


@app.command()
def status(workspace: WorkspaceOpt = "default") -> None:
    """Counts, versions and the settings in effect."""
    import duckdb
    import ibis
    import sqlalchemy

    from memberops.accounts import service as accounts
    from memberops.analytics.overview import workspace_counts
    from memberops.db import migrate

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        counts = workspace_counts(context, session, ws.id)
        versions = Table(title="versions", show_header=False)
        for name, version in [
            ("memberops", memberops.__version__), ("python", sys.version.split()[0]),
            ("schema", migrate.current_revision(context.store) or "-"), ("sqlalchemy", sqlalchemy.__version__),
            ("duckdb", duckdb.__version__), ("ibis", ibis.__version__),
        ]:
            versions.add_row(name, version)
        settings = Table(title="settings", show_header=False)
        for name, value in context.settings.redacted().items():
            settings.add_row(name, value)
        table = Table(title=f"workspace {ws.slug} ({ws.name})", show_header=False)
        for name, value in vars(counts).items():
            table.add_row(name.replace("_", " "), f"{value:,}")
        out.print(table, versions, settings)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="login e-mail")],
    role: Annotated[str, typer.Option(help="admin | marketer | analyst | associate")] = "admin",
    password: Annotated[str | None, typer.Option(help="omit to be prompted (not echoed)")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Create a console operator."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor

    if password is None:
        if not sys.stdin.isatty():
            err.print("error: no --password given and no terminal to ask on")
            raise typer.Exit(2)
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.ensure_workspace(session, workspace)
        user = accounts.create_user(session, ws, email=email, password=password, role=role, actor=Actor.cli())
        out.print(f"created {user.role} {user.email}")


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="ingest | loyalty | read | engage | admin; repeat or comma-separate")],
    name: Annotated[str, typer.Option(help="what the key is for")] = "cli",
    workspace: WorkspaceOpt = "default",
) -> None:
    """Create an API key. The key is the last word of the last line printed (shown only once)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor

    with _context() as context, context.store.transaction() as session:
        ws = accounts.ensure_workspace(session, workspace)
        issued = accounts.create_api_key(session, ws, name=name, scopes=scope, actor=Actor.cli())
    out.print(f"API key {issued.api_key.name!r} with scopes {', '.join(issued.api_key.scopes)}; store it now:")
    print(f"key: {issued.key}")  # plain print: no wrapping or markup, so scripts can take the last word


@keys_app.command("list")
def keys_list(workspace: WorkspaceOpt = "default") -> None:
    """List API keys (their prefixes; secrets are never stored)."""
    from memberops.accounts import service as accounts

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
        for key in accounts.list_api_keys(session, ws.id):
            table.add_row(key.id, key.name, key.prefix, ",".join(key.scopes), f"{key.created_at:%Y-%m-%d %H:%M}",
                          f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "-",
                          f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "-")
        out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see `keys list`)")],
                workspace: WorkspaceOpt = "default") -> None:
    """Revoke an API key at once."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        accounts.revoke_api_key(session, ws.id, key_id, Actor.cli())
        out.print(f"revoked {key_id}")


@outbox_app.command("export")
def outbox_export() -> None:
    """Move every pending outbox row to the lake now (the scheduler also does this every minute)."""
    from memberops.lake.export import export_outbox

    with _context() as context:
        result = export_outbox(context.store, context.settings.lake_path,
                               batch_size=context.settings.outbox_batch_size)
        out.print(f"exported {result.rows} rows in {result.batches} batches ({result.files_written} files)")


@lake_app.command("compact")
def lake_compact(
    table: Annotated[list[str] | None, typer.Option("--table", help="fact table to compact (default: all)")] = None,
) -> None:
    """Merge each fact partition's small files into one (the scheduler also does this nightly)."""
    from memberops.lake.compact import compact_lake

    with _context() as context:
        result = compact_lake(context.store, context.settings.lake_path, table)
    out.print(f"compacted {result.partitions} partitions: {result.files_merged} files → {result.files_written} "
              f"({result.rows:,} rows)")


class ImportKind(StrEnum):
    customers = "customers"
    orders = "orders"
    order_items = "order-items"
    refunds = "refunds"
    events = "events"


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


def _import_progress() -> Progress:
    from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _print_summary(summaries: list[ImportSummary]) -> None:
    table = Table("file", "read", "accepted", "with warnings", "quarantined", "duplicates skipped")
    for summary in summaries:
        note = " (already imported)" if summary.already_imported else ""
        table.add_row(summary.file + note, f"{summary.read:,}", f"{summary.accepted:,}",
                      f"{summary.accepted_with_warnings:,}", f"{summary.quarantined:,}", f"{summary.duplicates:,}")
    out.print(table)
    for summary in summaries:
        for reason, count in summary.quarantined_by_reason.items():
            out.print(f"  {summary.file}: quarantined {count:,} × {reason}")
        for warning, count in summary.warnings_by_field.items():
            out.print(f"  {summary.file}: kept {count:,} rows without a field: {warning}")
        if summary.unknown_columns:
            out.print(f"  {summary.file}: columns not mapped, ignored: {', '.join(summary.unknown_columns)}")
        if summary.quarantined:
            out.print(f"  see them: memberops quarantine show {summary.import_id}")


@app.command("import")
def import_(
    kind: Annotated[ImportKind, typer.Argument(help="what the files hold")],
    files: Annotated[list[Path], typer.Argument(help="one or more files", exists=True, dir_okay=False)],
    channel: Annotated[str, typer.Option("--channel", "-c", help="where the records come from, e.g. tmall, pos")],
    mapping: Annotated[Path | None, typer.Option(help="mapping file (YAML) over the channel's preset",
                                                 exists=True, dir_okay=False)] = None,
    file_format: Annotated[FileFormat | None, typer.Option("--format", help="default: from the file name")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Import customers, orders, order items, refunds or events; bad rows go to quarantine with a reason."""
    from memberops.accounts import service as accounts
    from memberops.ingest.batch import import_file

    summaries = []
    with _context() as context:
        with context.store.transaction() as session:
            ws = accounts.ensure_workspace(session, workspace)
        with _import_progress() as progress:
            for path in files:
                task = progress.add_task(f"{path.name}: starting", total=1.0)

                def report(phase: str, fraction: float | None, task: TaskID = task, name: str = path.name) -> None:
                    progress.update(task, description=f"{name}: {phase}", completed=fraction or 0)

                summaries.append(import_file(
                    context, ws, kind_name=kind.value, path=path, channel=channel, mapping_file=mapping,
                    file_format=file_format.value if file_format else None, progress=report,
                ))
                progress.remove_task(task)
    _print_summary(summaries)


@app.command()
def presets() -> None:
    """List the channel presets that ship with memberops (use them with `import --channel`)."""
    from memberops.ingest.mapping import list_presets, preset_path

    table = Table("channel", "kind", "file")
    for channel, kind in list_presets():
        table.add_row(channel, kind, str(preset_path(channel, kind)))
    out.print(table)


@quarantine_app.command("list")
def quarantine_list(
    show_all: Annotated[bool, typer.Option("--all", help="include imports with nothing quarantined")] = False,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Imports and how many of their rows are still quarantined."""
    from memberops.accounts import service as accounts
    from memberops.ingest import quarantine

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("kind", "channel", "file", "started", "accepted", "open in quarantine")
        table.add_column("import", no_wrap=True, min_width=36)
        for item in quarantine.list_imports(session, ws.id, only_open=not show_all):
            table.add_row(item.run.kind, item.run.channel, item.run.file_name,
                          f"{item.run.started_at:%Y-%m-%d %H:%M}", f"{item.run.counts.get('accepted', 0):,}",
                          f"{item.open_rows:,}", item.run.id)
        out.print(table)


@quarantine_app.command("show")
def quarantine_show(
    import_id: Annotated[str, typer.Argument(help="the import (see `quarantine list`)")],
    limit: Annotated[int, typer.Option(help="rows to show")] = 50,
    workspace: WorkspaceOpt = "default",
) -> None:
    """The quarantined rows of one import, with their reasons."""
    from memberops.accounts import service as accounts
    from memberops.ingest import quarantine

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        run = quarantine.get_import(session, ws.id, import_id)
        out.print(f"{run.kind} from {run.channel}, file {run.file_name}: {run.counts}")
        table = Table("id", "row", "reason", "raw")
        for row in quarantine.quarantined_rows(session, ws.id, import_id, limit=limit):
            table.add_row(str(row.id), str(row.row_number), row.reason, str(row.raw)[:120])
        out.print(table)


@quarantine_app.command("export")
def quarantine_export(
    import_id: Annotated[str, typer.Argument(help="the import (see `quarantine list`)")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="file to write (CSV, or JSONL for JSON imports)")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Write an import's open quarantined rows to a file to fix, then `quarantine retry --file`."""
    from memberops.accounts import service as accounts
    from memberops.ingest import quarantine

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        count = quarantine.export_rows(session, ws.id, import_id, out_file)
    out.print(f"wrote {count:,} rows to {out_file}; fix them, keep _quarantine_id, then: "
              f"memberops quarantine retry {import_id} --file {out_file}")


@quarantine_app.command("retry")
def quarantine_retry(
    import_id: Annotated[str, typer.Argument(help="the import (see `quarantine list`)")],
    fixed: Annotated[Path | None, typer.Option("--file", help="the fixed export", exists=True, dir_okay=False)] = None,
    mapping: Annotated[Path | None, typer.Option(help="a corrected mapping file", exists=True, dir_okay=False)] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Import quarantined rows again (fixed by hand, or under a corrected mapping)."""
    from memberops.accounts import service as accounts
    from memberops.ingest.batch import retry_quarantine

    with _context() as context:
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
        summary = retry_quarantine(context, ws, import_id, fixed_file=fixed, mapping_file=mapping)
    _print_summary([summary])


@quarantine_app.command("discard")
def quarantine_discard(
    import_id: Annotated[str, typer.Argument(help="the import (see `quarantine list`)")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Give up on an import's open quarantined rows (kept on record as discarded)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor, record
    from memberops.ingest import quarantine

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        count = quarantine.discard(session, ws, import_id)
        record(session, Actor.cli(), "quarantine.discard", workspace_id=ws.id, target_type="import",
               target_id=import_id, detail={"rows": count})
    out.print(f"discarded {count:,} rows")


@identity_app.command("resolve")
def identity_resolve(
    probabilistic: Annotated[bool, typer.Option("--probabilistic/--no-probabilistic",
                                                help="also match records that share no strong identifier")] = True,
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="match probability to merge at "
                                                    "(default 0.9); a band below it goes to review")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Resolve every identity record to a member: stitching with guard rails, probabilistic matching, stable ids."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor, record
    from memberops.identity.resolve import resolve_identities

    with _context() as context:
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
        with err.status("resolving identities…") as status:
            summary = resolve_identities(context, ws, actor=Actor.cli(), probabilistic=probabilistic,
                                         threshold=threshold,
                                         progress=lambda phase: status.update(f"resolving identities: {phase}…"))
        with context.store.transaction() as session:
            record(session, Actor.cli(), "identity.resolve", workspace_id=ws.id, target_type="resolution_run",
                   target_id=summary.run_id, detail={"records": summary.records, "members": summary.members})
    table = Table(title="identity resolution", show_header=False)
    for label, value in [
        ("records", summary.records), ("members", summary.members), ("new members", summary.new_members),
        ("members merged into others", summary.merged_members), ("members unmerged", summary.unmerged_members),
        ("records moved", summary.records_moved), ("flagged identifiers", summary.flagged_identifiers),
        ("pairs sent to review", summary.pairs_for_review),
        ("operator decisions applied", summary.decisions_applied),
        *((f"records tied by {rule}", n) for rule, n in sorted(summary.merges_by_rule.items())),
    ]:
        table.add_row(label, f"{value:,}")
    out.print(table)


@identity_app.command("review")
def identity_review(
    accept: Annotated[list[int] | None, typer.Option("--accept", help="pair id to accept (one person); repeat")] = None,
    reject: Annotated[list[int] | None, typer.Option("--reject", help="pair id to reject (two people); repeat")] = None,
    limit: Annotated[int, typer.Option(help="open pairs to show")] = 20,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Show likely duplicate pairs side by side, or decide them with --accept / --reject."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.identity import review

    with _context() as context:
        if accept or reject:
            with context.store.transaction() as session:
                ws = accounts.get_workspace(session, workspace)
                for pair_id in accept or []:
                    review.decide_pair(session, ws, pair_id, accept=True, actor=Actor.cli())
                for pair_id in reject or []:
                    review.decide_pair(session, ws, pair_id, accept=False, actor=Actor.cli())
            out.print(f"decided {len(accept or []) + len(reject or [])} pairs; they apply at the next "
                      "`memberops identity resolve`")
            return
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
            pairs = review.open_pairs(session, ws.id, limit=limit)
            total = review.count_open(session, ws.id)
        refs = [ref for p in pairs for ref in ((p.channel_a, p.source_id_a), (p.channel_b, p.source_id_b))]
        details = review.record_details(context.warehouse(), ws.id, refs)
        for pair in pairs:
            a = details.get((pair.channel_a, pair.source_id_a), {})
            b = details.get((pair.channel_b, pair.source_id_b), {})
            table = Table(f"pair {pair.id}  p={pair.match_probability:.3f}",
                          f"{pair.channel_a}/{pair.source_id_a}", f"{pair.channel_b}/{pair.source_id_b}")
            for field_name in review.DETAIL_FIELDS:
                if a.get(field_name) is not None or b.get(field_name) is not None:
                    table.add_row(field_name, str(a.get(field_name) or "—"), str(b.get(field_name) or "—"))
            out.print(table)
        out.print(f"{total:,} open pairs; decide with --accept ID / --reject ID")


@identity_app.command("export")
def identity_export(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="CSV file: channel,source_id,member_id")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Write the identity map (channel, source_id) → member_id as CSV."""
    from memberops.accounts import service as accounts
    from memberops.identity.service import export_identity_map

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        count = export_identity_map(session, ws.id, out_file)
    out.print(f"wrote {count:,} rows to {out_file}")


def _show_settings(kind: str, slug: str, settings: Any, version: int, out_file: Path | None) -> None:
    """Print (or write to ``out_file``) a workspace's versioned settings as YAML headed by their version."""
    import yaml

    text = f"# {kind} settings of {slug}, version {version}{' (defaults)' if version == 0 else ''}\n" + yaml.safe_dump(
        settings.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    if out_file is None:
        typer.echo(text, nl=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote version {version} to {out_file}")


def _settings_file(file: Path, invalid: Callable[[list[dict[str, str]]], Exception]) -> Any:
    """The YAML document in ``file``; ``invalid`` (the domain's settings error) when it cannot be read."""
    import yaml

    try:
        return yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise invalid([{"field": "", "message": f"cannot read {file}: {exc}"}]) from None


identity_config_app = typer.Typer(help="The workspace's OneID settings: strong identifier types, guard rails, "
                                        "match thresholds (versioned; every change audited).")
identity_app.add_typer(identity_config_app, name="config")


@identity_config_app.command("show")
def identity_config_show(
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="write the YAML here instead")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Print the settings in force as YAML (a file to edit and give to `identity config set`)."""

    from memberops.accounts import service as accounts
    from memberops.identity import config

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        settings, version = config.current(session, ws.id)
    _show_settings("OneID", ws.slug, settings, version, out_file)


@identity_config_app.command("set")
def identity_config_set(
    file: Annotated[Path, typer.Argument(help="YAML file of settings; fields left out take their defaults")],
    workspace: WorkspaceOpt = "default",
    based_on: BasedOnOpt = None,
) -> None:
    """Make FILE the new settings version; the next `identity resolve` and live customer records follow it."""

    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.identity import config
    from memberops.identity.errors import InvalidIdentityConfig

    with _context() as context:
        document = _settings_file(file, InvalidIdentityConfig)
        with context.store.transaction() as session:
            ws = accounts.get_workspace(session, workspace)
            _, version = config.update(session, ws.id, document, actor=Actor.cli(), based_on=based_on)
    out.print(f"identity settings version {version} in force for {workspace}")


def _parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error[/red]: --as-of {value!r} is not an ISO 8601 date or time")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _run_insight(context: Context, workspace: Workspace, as_of: datetime | None, actor: Actor) -> None:
    from memberops.insight import fact_index
    from memberops.insight.snapshot import compute_insight

    with _import_progress() as progress:
        task = progress.add_task("computing traits", total=1.0)

        def report(phase: str, fraction: float) -> None:
            progress.update(task, description=f"insight: {phase}", completed=fraction)

        summary = compute_insight(context, workspace, actor=actor, as_of=as_of, progress=report)
        progress.update(task, description="insight: profile index", completed=1.0)
        fact_index.refresh(context.settings.lake_path)
        progress.update(task, description="insight: done", completed=1.0)
    table = Table(title=f"member insight as of {summary.as_of}", show_header=False)
    table.add_row("members", f"{summary.members:,}")
    table.add_row("buyers", f"{summary.buyers:,}")
    # every stage of the chain and every segment of the grid, zeros included: an empty stage shows
    segments = summary.segments | {"none (no purchase in the RFM window)": summary.rfm_unscored}
    for title, counts in (("lifecycle", summary.lifecycle), ("AIPL", summary.aipl), ("RFM segment", segments),
                          ("tag", summary.tags), ("change", summary.changes)):
        for name, count in counts.items():
            table.add_row(f"{title}: {name}", f"{count:,}")
    clv = summary.clv
    table.add_row("CLV model", "BG/NBD + Gamma–Gamma" if clv.get("bgnbd") else f"not fitted ({clv.get('skipped')})")
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)


@insight_app.command("compute")
def insight_compute(
    as_of: Annotated[str | None, typer.Option("--as-of", help="compute as of this UTC time (ISO 8601; "
                                              "default now): same facts and time, same traits")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Compute every member's traits, RFM, lifecycle, CLV, KOC and tags; snapshot them and record changes."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor

    moment = _parse_as_of(as_of)
    with _context() as context:
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
        _run_insight(context, ws, moment, Actor.cli())


insight_config_app = typer.Typer(help="The workspace's insight settings: RFM window and grid, lifecycle rules, "
                                       "CLV and KOC (versioned; every change audited).", no_args_is_help=True)
insight_app.add_typer(insight_config_app, name="config")


@insight_config_app.command("show")
def insight_config_show(
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="write the YAML here instead")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Print the settings in force as YAML (a file to edit and give to `insight config set`)."""

    from memberops.accounts import service as accounts
    from memberops.insight import config_store

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        settings, version = config_store.current_version(session, ws.id)
    _show_settings("insight", ws.slug, settings, version, out_file)


@insight_config_app.command("set")
def insight_config_set(
    file: Annotated[Path, typer.Argument(help="YAML file of settings; fields left out take their defaults")],
    workspace: WorkspaceOpt = "default",
    based_on: BasedOnOpt = None,
) -> None:
    """Make FILE the new settings version; the next `insight compute` and the nightly job follow it."""

    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.insight import config_store
    from memberops.insight.errors import InvalidInsightConfig

    with _context() as context:
        document = _settings_file(file, InvalidInsightConfig)
        with context.store.transaction() as session:
            ws = accounts.get_workspace(session, workspace)
            _, version = config_store.update(session, ws.id, document, actor=Actor.cli(), based_on=based_on)
    out.print(f"insight settings version {version} in force for {workspace}")


@tags_app.command("list")
def tags_list(workspace: WorkspaceOpt = "default") -> None:
    """The workspace's tags, their version and rule."""
    import json

    from memberops.accounts import service as accounts
    from memberops.insight import tagging

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        tags = tagging.list_tags(session, ws.id)
    table = Table("tag", "version", "description", "rule")
    for definition, row in tags:
        table.add_row(definition.name, str(row.version), definition.description, json.dumps(row.rule, ensure_ascii=False))
    out.print(table)


@tags_app.command("apply")
def tags_apply(
    tag_file: Annotated[Path, typer.Argument(help="YAML file: tags: [{name, description, rule}, …]", exists=True,
                                             dir_okay=False)],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Create or update the tags of a YAML file (unchanged tags keep their version); they apply at the next
    `memberops insight compute`."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.insight import tagging

    with _context() as context:
        definitions = tagging.read_tag_file(tag_file)
        with context.store.transaction() as session:
            ws = accounts.get_workspace(session, workspace)
            results = [tagging.put_tag(session, ws.id, d, actor=Actor.cli()) for d in definitions]
    for row, changed in results:
        out.print(f"{row.name}: {'version ' + str(row.version) if changed else 'unchanged'}")


@tags_app.command("delete")
def tags_delete(name: Annotated[str, typer.Argument(help="the tag's name")], workspace: WorkspaceOpt = "default") -> None:
    """Retire a tag (its history is kept)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.insight import tagging

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        tagging.delete_tag(session, ws.id, name, actor=Actor.cli())
    out.print(f"deleted tag {name}")


demo_app = typer.Typer(help="The demo brand: generate it, import it, serve it.")
app.add_typer(demo_app, name="demo")

DEMO_MEMBERS = 20_000
DEMO_SEED = 7
DemoEndOpt = Annotated[str | None, typer.Option(
    "--end", help="the last day of the brand's history, YYYY-MM-DD (default: yesterday in Asia/Shanghai); "
                  "the history is the two years up to it")]


def _demo_window(end: str | None) -> DemoWindow | None:
    """The demo window ending on ``end`` (None: not pinned); exits 2 on a bad date or one beyond the calendar."""
    if end is None:
        return None
    from memberops.demo.clock import DemoWindow, UnknownSpringFestival

    try:
        day = date.fromisoformat(end)
    except ValueError:
        err.print(f"[red]error[/red]: --end {end!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None
    try:
        return DemoWindow(day)
    except UnknownSpringFestival as exc:
        err.print(f"[red]error[/red]: --end {end}: {exc}")
        raise typer.Exit(2) from None


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    members: Annotated[int, typer.Option(help="people in the demo brand")] = DEMO_MEMBERS,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same brand)")] = DEMO_SEED,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="serve when set up")] = True,
    end: DemoEndOpt = None,
) -> None:
    """Generate the demo brand, import it, compute what exists, then serve console and API.

    The brand's history is the two years up to yesterday (or ``--end``), so insight and loyalty, which run
    as of now, find it alive. A data folder keeps the brand it has: run again, the same brand is used.
    Prints the console URL and the demo operator's login.
    """
    if ctx.invoked_subcommand is not None:
        return
    from memberops.demo.clock import TIMEZONE, DemoWindow
    from memberops.demo.generate import generate_brand
    from memberops.demo.load import brand_is_generated, brand_window, import_brand
    from memberops.demo.setup import DEMO_WORKSPACE, ensure_demo_operator

    pinned = _demo_window(end)
    with _context() as context:
        brand_dir = context.settings.data_dir / "demo-brand"
        held = brand_window(brand_dir)
        if pinned is not None and held is not None and held != pinned:
            # Its people and order ids would come again with other dates: two histories of one brand.
            err.print(f"[red]error[/red]: {context.settings.data_dir} holds the demo brand of {held.start} to "
                      f"{held.end}; one ending {pinned.end} would be imported over it: use an empty data folder "
                      "(MEMBEROPS_DATA_DIR)")
            raise typer.Exit(2)
        login = ensure_demo_operator(context)
        if held is not None and brand_is_generated(brand_dir, members=members, seed=seed):
            window = held
        else:
            window = pinned or DemoWindow.ending_yesterday()
            with err.status(f"generating the demo brand ({members:,} people)…"):
                generated = generate_brand(brand_dir, members=members, seed=seed, end=window.end)
            out.print(f"generated {len(generated.files)} channel files in {generated.seconds:.1f} s: {brand_dir}")
        aged = (DemoWindow.ending_yesterday().end - window.end).days
        out.print(f"history: {window.start} to {window.end} ({TIMEZONE})" + (
            f", ended {aged} days ago: insight and loyalty run as of today, so the brand has aged; "
            "an empty data folder gets one that ends yesterday" if aged > 0 else ""))
        from memberops.accounts import service as accounts

        with context.store.read() as session:
            workspace = accounts.get_workspace(session, DEMO_WORKSPACE)
        with _import_progress() as progress:
            task = progress.add_task("importing", total=1.0)

            def report(phase: str, fraction: float | None) -> None:
                progress.update(task, description=f"importing: {phase}", completed=fraction or 0)

            summaries = import_brand(context, workspace, brand_dir, progress=report)
        _print_summary(summaries)
        from memberops.lake.compact import compact_lake

        with err.status("compacting the lake…"):
            compacted = compact_lake(context.store, context.settings.lake_path)
        out.print(f"lake: {compacted.files_merged:,} files merged into {compacted.files_written:,}")
        from memberops.audit.service import Actor
        from memberops.identity.resolve import resolve_identities

        with err.status("resolving identities (OneID)…"):
            resolution = resolve_identities(context, workspace, actor=Actor.system())
        out.print(f"OneID: {resolution.records:,} identity records → {resolution.members:,} members")
        from memberops.demo.setup import ensure_demo_tags

        ensure_demo_tags(context)
        from memberops.demo.loyalty import DEMO_PROGRAMME, setup_demo_loyalty

        with err.status("loyalty: enrolling members, points for past orders, coupons…"):
            loyalty = setup_demo_loyalty(context, workspace)
        out.print(f"loyalty: {loyalty.members:,} members enrolled ({loyalty.enrolled:,} new), "
                  f"{loyalty.backfill.points_earned:,} points earned on {loyalty.backfill.orders:,} past orders, "
                  f"{loyalty.backfill.points_reversed:,} reversed on {loyalty.backfill.refunds:,} refunds; "
                  f"{loyalty.referrals.bound:,} referrals bound ({loyalty.referrals.rewarded:,} rewarded); "
                  f"{loyalty.coupons_issued:,} coupons issued ({loyalty.coupons_redeemed:,} redeemed), "
                  f"{loyalty.benefits_granted:,} benefit grants, {loyalty.rewards_redeemed:,} rewards redeemed "
                  f"in {loyalty.seconds:.1f} s")
        if loyalty.tiers is not None and loyalty.tiers.by_tier:
            out.print("tiers: " + ", ".join(f"{loyalty.tiers.by_tier.get(tier['code'], 0):,} {tier['name']}"
                                            for tier in DEMO_PROGRAMME["tiers"]))
        _run_insight(context, workspace, None, Actor.system())
    out.print("[bold]memberops demo[/bold]")
    out.print(f"  console:  http://{host}:{port}/")
    out.print(f"  login:    {login.email}")
    out.print(f"  password: {login.password}")
    if serve_after:
        serve(host=host, port=port, jobs=True)


@demo_app.command("generate")
def demo_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the brand's files into")],
    members: Annotated[int, typer.Option(help="people in the brand (prospects included)")] = DEMO_MEMBERS,
    seed: Annotated[int, typer.Option(help="random seed (same seed and end, same files)")] = DEMO_SEED,
    end: DemoEndOpt = None,
) -> None:
    """Write a realistic demo brand in its channels' own formats, with a ground-truth folder."""
    from memberops.demo.generate import generate_brand

    window = _demo_window(end)
    with err.status(f"generating {members:,} people…"):
        summary = generate_brand(out_dir, members=members, seed=seed, end=window.end if window else None)
    table = Table("file", "channel", "kind", "rows")
    for entry in summary.files:
        table.add_row(entry.path, entry.channel, entry.kind, f"{entry.rows:,}")
    out.print(table)
    out.print(f"{summary.members:,} people ({summary.prospects:,} prospects), {summary.orders:,} orders, "
              f"{summary.events:,} events in {summary.seconds:.1f} s → {out_dir}")
    out.print(f"history: {summary.window.start} to {summary.window.end}")
    out.print(f"import them all: memberops demo import {out_dir}")


@demo_app.command("import")
def demo_import(
    brand_dir: Annotated[Path, typer.Argument(help="a folder written by `demo generate`", exists=True,
                                              file_okay=False)],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Import every file of a generated brand through the channel presets, in manifest order."""
    from memberops.accounts import service as accounts
    from memberops.demo.load import import_brand

    with _context() as context:
        with context.store.transaction() as session:
            ws = accounts.ensure_workspace(session, workspace)
        summaries = import_brand(context, ws, brand_dir)
    _print_summary(summaries)


@app.command()
def bench(
    names: Annotated[list[str] | None, typer.Argument(help="benchmarks to run (default: all)")] = None,
    bench_dir: Annotated[Path | None, typer.Option("--dir", help="folder of bench_*.py files")] = None,
    quick: Annotated[bool, typer.Option(help="smaller inputs, for a smoke run")] = False,
) -> None:
    """Run benchmarks, each next to its baseline in the same run, and print the ratio."""
    from memberops.benchmarks import find_bench_dir, run_benchmarks

    directory = bench_dir or find_bench_dir()
    failed = run_benchmarks(directory, names or [], quick=quick, console=out)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
