"""``db/dialect.py`` helpers on every store (SQLite and PostgreSQL): the bulk insert and the bulk copy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast

import pyarrow as pa
import pytest
from sqlalchemy import Table, insert, select

from memberops.accounts.models import Workspace
from memberops.db.dialect import copy_rows, insert_ignoring_conflicts, insert_many
from memberops.identity.models import Identifier, Member
from memberops.insight.models import MemberTrait
from memberops.runtime import Context


class TestInsertMany:
    def test_rows_and_constants_read_back_as_written(self, context: Context, workspace: Workspace) -> None:
        at = datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=UTC)
        with context.store.transaction() as session:
            insert_many(session, insert(Member), {"id": ["m1", "m2", "m3"]}, {
                "workspace_id": workspace.id, "is_enrolled": False, "enrolled_at": None, "merged_into_id": None,
                "created_at": at, "updated_at": at}, chunk=2)
        with context.store.read() as session:
            members = session.scalars(select(Member).where(Member.workspace_id == workspace.id).order_by(Member.id)).all()
            assert [m.id for m in members] == ["m1", "m2", "m3"]
            assert all(m.created_at == at and m.is_enrolled is False and m.enrolled_at is None for m in members)

    def test_conflicts_are_ignored_with_an_on_conflict_statement(self, context: Context, workspace: Workspace) -> None:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        with context.store.transaction() as session:
            session.add(Member(id="m1", workspace_id=workspace.id))
            session.flush()
            statement = insert_ignoring_conflicts(session, cast(Table, Identifier.__table__),
                                                  ("workspace_id", "type", "value", "member_id"))
            rows = {"type": ["phone", "phone", "email"], "value": ["+861", "+861", "a@b.c"],
                    "channel": ["pos", "app", ""], "member_id": ["m1", "m1", "m1"]}
            insert_many(session, statement, rows, {"workspace_id": workspace.id, "created_at": at})
        with context.store.read() as session:
            found = session.execute(select(Identifier.type, Identifier.value, Identifier.channel, Identifier.created_at)
                                    .order_by(Identifier.id)).all()
        assert [tuple(r) for r in found] == [("phone", "+861", "pos", at), ("email", "a@b.c", "", at)]

    def test_a_column_with_a_python_default_must_be_given(self, context: Context, workspace: Workspace) -> None:
        with pytest.raises(ValueError, match="is_enrolled"), context.store.transaction() as session:
            insert_many(session, insert(Member), {"id": ["m1"]}, {"workspace_id": workspace.id, "created_at": None,
                                                                  "updated_at": None, "enrolled_at": None,
                                                                  "merged_into_id": None})

    def test_columns_of_different_lengths_are_refused(self, context: Context, workspace: Workspace) -> None:
        with pytest.raises(ValueError, match="length"), context.store.transaction() as session:
            insert_many(session, insert(Member), {"id": ["m1"], "merged_into_id": []}, {})


class TestCopyRows:
    def test_text_with_every_special_character_reads_back_as_written(self, context: Context,
                                                                     workspace: Workspace) -> None:
        at = datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=UTC)
        awkward = ['tab\there', 'line\nbreak', 'back\\slash', 'return\r', '\\N', '婴儿 "quoted"']
        documents = [json.dumps({"note": text}) for text in awkward]
        with context.store.transaction() as session:
            copy_rows(session, cast(Table, MemberTrait.__table__), {
                "member_id": pa.array(awkward), "traits": pa.array(documents), "tags": pa.array(["[]"] * 6),
            }, {"workspace_id": workspace.id, "computed_at": at}, chunk=4)
        with context.store.read() as session:
            rows = session.scalars(select(MemberTrait).where(MemberTrait.workspace_id == workspace.id)).all()
        assert sorted((r.member_id, r.traits, r.tags, r.computed_at) for r in rows) == \
               sorted((text, {"note": text}, [], at) for text in awkward)

    def test_nothing_to_copy_and_columns_of_different_lengths(self, context: Context, workspace: Workspace) -> None:
        table = cast(Table, MemberTrait.__table__)
        with context.store.transaction() as session:
            copy_rows(session, table, {"member_id": pa.array([], pa.string())}, {"workspace_id": workspace.id})
        with pytest.raises(ValueError, match="length"), context.store.transaction() as session:
            copy_rows(session, table, {"member_id": pa.array(["m1"]), "traits": pa.array([], pa.string())}, {})
