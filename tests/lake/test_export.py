"""The outbox export: in order, idempotent, and exactly once across crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.db.outbox import OutboxRow, emit
from memberops.lake.export import export_outbox, outbox_backlog
from memberops.runtime import Context


def _emit_events(context: Context, workspace: Workspace, first: int, count: int) -> None:
    with context.store.transaction() as session:
        for n in range(first, first + count):
            emit(session, workspace_id=workspace.id, topic="events",
                 payload={"channel": "app", "event_id": f"e{n}", "type": "page_view", "anonymous_id": "a1",
                          "occurred_at": "2026-03-01T10:00:00+00:00", "properties": {"n": n}})


def _lake_event_ids(context: Context) -> list[str]:
    warehouse = context.warehouse()
    frame = warehouse.to_pyarrow(warehouse.table("events").select("event_id"))
    return frame.column("event_id").to_pylist()


class TestExport:
    def test_moves_rows_in_order_and_marks_them(self, context: Context, workspace: Workspace) -> None:
        _emit_events(context, workspace, 0, 25)
        result = export_outbox(context.store, context.settings.lake_path, batch_size=10)
        assert (result.rows, result.batches) == (25, 3)
        assert sorted(_lake_event_ids(context), key=lambda e: int(e[1:])) == [f"e{n}" for n in range(25)]
        assert outbox_backlog(context.store) == 0
        with context.store.read() as session:
            batches = session.execute(select(OutboxRow.id, OutboxRow.batch_id).order_by(OutboxRow.id)).all()
        batch_order = list(dict.fromkeys(b for _, b in batches if b is not None))
        assert len(batch_order) == result.batches and batch_order == sorted(batch_order)  # claimed in id order

    def test_rerun_duplicates_nothing(self, context: Context, workspace: Workspace) -> None:
        _emit_events(context, workspace, 0, 5)
        export_outbox(context.store, context.settings.lake_path)
        assert export_outbox(context.store, context.settings.lake_path).rows == 0
        assert len(_lake_event_ids(context)) == 5

    def test_rolled_back_state_change_emits_nothing(self, context: Context, workspace: Workspace) -> None:
        with pytest.raises(RuntimeError), context.store.transaction() as session:
            emit(session, workspace_id=workspace.id, topic="events",
                 payload={"channel": "app", "event_id": "lost", "type": "x", "occurred_at": "2026-03-01T00:00:00+00:00"})
            raise RuntimeError("the state change failed")
        assert outbox_backlog(context.store) == 0

    @pytest.mark.parametrize("stage", ["claimed", "written"])
    def test_crash_at_each_stage_then_recover_exactly_once(
        self, context: Context, workspace: Workspace, stage: str
    ) -> None:
        _emit_events(context, workspace, 0, 12)

        def crash(at: str, _batch: str) -> None:
            if at == stage:
                raise KeyboardInterrupt  # the process dies here

        with pytest.raises(KeyboardInterrupt):
            export_outbox(context.store, context.settings.lake_path, batch_size=5, on_stage=crash)
        _emit_events(context, workspace, 12, 3)  # life goes on before the restart
        export_outbox(context.store, context.settings.lake_path, batch_size=5)
        ids = _lake_event_ids(context)
        assert sorted(ids) == sorted(f"e{n}" for n in range(15))


CRASHING_EXPORT = textwrap.dedent(
    """
    import os, sys
    from memberops.config import Settings
    from memberops.runtime import Context
    from memberops.lake.export import export_outbox

    stage_to_die_at = sys.argv[1]
    context = Context.from_settings(Settings(data_dir=sys.argv[2], database_url=sys.argv[3]))

    def die(stage, batch_id):
        if stage == stage_to_die_at:
            os._exit(9)  # no cleanup, no finally: as if the power went

    export_outbox(context.store, context.settings.lake_path, batch_size=4, on_stage=die)
    os._exit(0)
    """
)


class TestCrashedProcess:
    """Kill a real process between the state commit and the export, and inside the export."""

    @pytest.mark.parametrize("stage", ["before_export", "claimed", "written"])
    def test_restart_completes_the_export_exactly_once(
        self, context: Context, workspace: Workspace, stage: str
    ) -> None:
        _emit_events(context, workspace, 0, 10)  # committed: the state change happened
        if stage != "before_export":
            done = subprocess.run(
                [sys.executable, "-c", CRASHING_EXPORT, stage, str(context.settings.data_dir),
                 context.settings.database_url], capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 9, done.stderr
        assert outbox_backlog(context.store) == 10  # nothing marked: the crash came first
        result = export_outbox(context.store, context.settings.lake_path, batch_size=4)
        assert result.rows == 10
        assert sorted(_lake_event_ids(context)) == sorted(f"e{n}" for n in range(10))
        assert outbox_backlog(context.store) == 0
