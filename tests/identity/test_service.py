from __future__ import annotations

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.db.outbox import OutboxRow
from memberops.identity import service
from memberops.identity.errors import InvalidIdentifier, MemberNotFound
from memberops.identity.normalise import normalise_email, normalise_phone
from memberops.runtime import Context


class TestNormalise:
    @pytest.mark.parametrize(("raw", "expected"), [
        (" Ana@Example.COM ", "ana@example.com"), ("not-an-email", None), ("a@b", None),
    ])
    def test_email(self, raw: str, expected: str | None) -> None:
        assert normalise_email(raw) == expected

    @pytest.mark.parametrize(("raw", "expected"), [
        ("138 0013-8001", "+8613800138001"), ("+86 138 0013 8001", "+8613800138001"), ("12", None),
        ("0086-13800138001", "+8613800138001"), ("+44 20 7946 0958", "+442079460958"), ("99999999999", None),
    ])
    def test_phone(self, raw: str, expected: str | None) -> None:
        assert normalise_phone(raw) == expected


class TestResolveCustomer:
    def test_shared_identifier_finds_the_same_member(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            first = service.resolve_customer(session, workspace, channel="pos", source_id="p1",
                                             identifiers={"phone": "138 0013 8001"})
            second = service.resolve_customer(session, workspace, channel="tmall", source_id="buyer9",
                                              identifiers={"phone": "13800138001", "email": "A@x.com"})
        assert first.is_new_member and not second.is_new_member
        assert first.member.id == second.member.id
        with context.store.read() as session:
            assert {i.type for i in service.identifiers_of(session, first.member.id)} == {"phone", "email"}
            assert service.count_members(session, workspace.id) == 1

    def test_replay_changes_nothing(self, context: Context, workspace: Workspace) -> None:
        for _ in range(3):
            with context.store.transaction() as session:
                service.resolve_customer(session, workspace, channel="pos", source_id="p1",
                                         identifiers={"email": "a@x.com"})
        with context.store.read() as session:
            assert session.scalar(select(func.count(OutboxRow.id))) == 1
            assert service.count_identity_links(session, workspace.id) == 1

    def test_invalid_identifier_is_refused(self, context: Context, workspace: Workspace) -> None:
        with pytest.raises(InvalidIdentifier), context.store.transaction() as session:
            service.resolve_customer(session, workspace, channel="pos", source_id="p1",
                                     identifiers={"email": "nope"})

    def test_merged_member_leads_to_its_survivor(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            a = service.resolve_customer(session, workspace, channel="pos", source_id="1", identifiers={}).member
            b = service.resolve_customer(session, workspace, channel="pos", source_id="2", identifiers={}).member
            b.merged_into_id = a.id
        with context.store.read() as session:
            assert service.get_member(session, workspace.id, b.id).id == a.id
            with pytest.raises(MemberNotFound):
                service.get_member(session, "other-workspace", a.id)
