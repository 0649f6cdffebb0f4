"""OneID batch resolution on every state store: stable ids, merges, decisions that survive re-runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.identity import decisions
from memberops.identity.models import IdentityEvent, Member
from memberops.identity.resolve import resolve_identities
from memberops.identity.service import count_members, export_identity_map
from memberops.ingest.batch import import_file
from memberops.runtime import Context

HEADER = "source_id,phone,email,wechat_unionid\n"


def _import(context: Context, workspace: Workspace, tmp_path: Path, name: str, rows: str, channel: str = "crm") -> None:
    path = tmp_path / name
    path.write_text(HEADER + rows)
    import_file(context, workspace, kind_name="customers", path=path, channel=channel)


def _resolve(context: Context, workspace: Workspace) -> dict[str, str]:
    resolve_identities(context, workspace, actor=Actor.cli())
    out = context.settings.data_dir / "map.csv"
    with context.store.read() as session:
        export_identity_map(session, workspace.id, out)
    lines = out.read_text().splitlines()[1:]
    return {f"{c}/{s}": m for c, s, m in (line.split(",") for line in lines)}


class TestResolve:
    def test_records_become_members(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        _import(context, workspace, tmp_path, "a.csv",
                "r1,13800138001,,\nr2,138-0013-8001,a@x.com,\nr3,,A@X.com ,\nr4,13900139000,,\n")
        members = _resolve(context, workspace)
        assert members["crm/r1"] == members["crm/r2"] == members["crm/r3"] != members["crm/r4"]
        with context.store.read() as session:
            assert count_members(session, workspace.id) == 2

    def test_ids_are_stable_and_merges_recorded(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,,\nr2,,b@x.com,\nr3,,c@x.com,\n")
        first = _resolve(context, workspace)
        assert _resolve(context, workspace) == first  # a re-run changes nothing
        # a new record carries r1's phone and r2's email: r1 and r2 are one person after all
        _import(context, workspace, tmp_path, "b.csv", "r9,13800138001,b@x.com,\n", channel="pos")
        second = _resolve(context, workspace)
        assert second["crm/r1"] == second["crm/r2"] == second["pos/r9"]
        assert second["crm/r1"] in (first["crm/r1"], first["crm/r2"])  # an existing id survives
        assert second["crm/r3"] == first["crm/r3"]
        absorbed = ({first["crm/r1"], first["crm/r2"]} - {second["crm/r1"]}).pop()
        with context.store.read() as session:
            member = session.get(Member, absorbed)
            assert member is not None and member.merged_into_id == second["crm/r1"]
            merge = session.scalars(select(IdentityEvent).where(IdentityEvent.kind == "merge")).one()
            assert (merge.member_id, merge.other_member_id) == (second["crm/r1"], absorbed)
            assert count_members(session, workspace.id) == 2

    def test_one_unionid_per_person(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,,u1\nr2,13800138001,,u2\n")
        members = _resolve(context, workspace)
        assert members["crm/r1"] != members["crm/r2"]


class TestDecisions:
    def test_pin_split_and_merge_survive_reruns(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        _import(context, workspace, tmp_path, "a.csv",
                "r1,13800138001,,\nr2,13800138001,,\nr3,,d@x.com,\nr4,,d@x.com,\nr5,,e@x.com,\nr6,,f@x.com,\n")
        before = _resolve(context, workspace)
        assert before["crm/r1"] == before["crm/r2"] and before["crm/r3"] == before["crm/r4"]
        with context.store.transaction() as session:
            decisions.decide(session, workspace, kind="pin_apart", record_a=("crm", "r1"), record_b=("crm", "r2"),
                             reason="two people", actor=Actor.cli())
            decisions.decide(session, workspace, kind="split", record_a=("crm", "r4"), record_b=None,
                             reason="wrong email", actor=Actor.cli())
            decisions.decide(session, workspace, kind="merge", record_a=("crm", "r5"), record_b=("crm", "r6"),
                             reason="same person, new email", actor=Actor.cli())
        for _ in range(2):
            after = _resolve(context, workspace)
            assert after["crm/r1"] != after["crm/r2"]
            assert after["crm/r3"] != after["crm/r4"]
            assert after["crm/r5"] == after["crm/r6"]
            assert after["crm/r1"] == before["crm/r1"] and after["crm/r3"] == before["crm/r3"]

    def test_unknown_record_is_refused(self, context: Context, workspace: Workspace) -> None:
        with pytest.raises(decisions.UnknownRecord), context.store.transaction() as session:
            decisions.decide(session, workspace, kind="split", record_a=("crm", "nobody"), record_b=None,
                             reason="", actor=Actor.cli())


class TestDecisionApi:
    def test_pin_apart_over_http_then_resolve(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        from fastapi.testclient import TestClient

        from memberops.api.app import create_app
        from tests.factories import make_key

        _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,,\nr2,13800138001,,\n")
        before = _resolve(context, workspace)
        assert before["crm/r1"] == before["crm/r2"]
        with context.store.transaction() as session:
            admin = make_key(session, workspace, "admin")
            reader = make_key(session, workspace, "read")
        body = {"a": {"channel": "crm", "source_id": "r1"}, "b": {"channel": "crm", "source_id": "r2"},
                "reason": "twins sharing a phone"}
        with TestClient(create_app(context)) as client:
            assert client.post("/api/v1/identity/pin-apart", json=body,
                               headers={"Authorization": f"Bearer {reader}"}).status_code == 403
            made = client.post("/api/v1/identity/pin-apart", json=body, headers={"Authorization": f"Bearer {admin}"})
            assert made.status_code == 201 and made.json()["kind"] == "pin_apart"
            unknown = client.post("/api/v1/identity/split", json={"record": {"channel": "crm", "source_id": "zz"}},
                                  headers={"Authorization": f"Bearer {admin}"})
            assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_record"
            after = _resolve(context, workspace)
            assert after["crm/r1"] != after["crm/r2"]
            identities = client.get(f"/api/v1/members/{after['crm/r1']}/identities",
                                    headers={"Authorization": f"Bearer {reader}"}).json()
            assert identities["identities"] == [{"channel": "crm", "source_id": "r1"}]


def test_member_profile_shows_the_golden_record(context: Context, workspace: Workspace, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from memberops.api.app import create_app
    from tests.factories import make_key

    _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,a@x.com,\nr2,138 0013 8001,,\n")
    members = _resolve(context, workspace)
    with context.store.transaction() as session:
        key = make_key(session, workspace, "read")
    with TestClient(create_app(context)) as client:
        body = client.get(f"/api/v1/members/{members['crm/r1']}", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["golden"]["phone"] == "+8613800138001" and body["golden"]["email"] == "a@x.com"


class TestProbabilistic:
    """Records with no shared strong identifier: joined by the matcher, or not at all without it."""

    @staticmethod
    def _people(tmp_path: Path, context: Context, workspace: Workspace) -> None:
        import random

        rng = random.Random(7)
        surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
        given = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
        cities = ["上海市", "北京市", "广州市", "深圳市", "杭州市", "成都市", "武汉市", "南京市"]
        pos = ["source_id,full_name,birthday,city,gender"]
        jd = ["source_id,full_name,birthday,city,gender"]
        for n in range(150):
            name = rng.choice(surnames) + rng.choice(given) + rng.choice(given)
            birthday = f"19{rng.randint(70, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            city, gender = rng.choice(cities), rng.choice(["F", "M"])
            pos.append(f"p{n},{name},{birthday},{city},{gender}")
            if n % 3:  # two in three people also shop on JD, under another id
                jd.append(f"j{n},{name},{birthday},{city},{gender}")
            else:  # a stranger on JD
                jd.append(f"j{n},{rng.choice(surnames)}{rng.choice(given)},19{rng.randint(70, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)},"
                          f"{rng.choice(cities)},{rng.choice(['F', 'M'])}")
        for channel, lines in (("pos-shop", pos), ("jd-shop", jd)):
            path = tmp_path / f"{channel}.csv"
            path.write_text("\n".join(lines) + "\n")
            import_file(context, workspace, kind_name="customers", path=path, channel=channel)

    def test_matcher_joins_what_identifiers_cannot(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        self._people(tmp_path, context, workspace)
        summary = resolve_identities(context, workspace, actor=Actor.cli(), probabilistic=False)
        assert summary.members == summary.records  # nothing strong is shared
        summary = resolve_identities(context, workspace, actor=Actor.cli())
        members = _resolve(context, workspace)
        same = sum(members[f"pos-shop/p{n}"] == members[f"jd-shop/j{n}"] for n in range(150) if n % 3)
        strangers = sum(members[f"pos-shop/p{n}"] == members[f"jd-shop/j{n}"] for n in range(150) if not n % 3)
        assert same >= 90  # of 100 people on both channels
        assert strangers == 0
        assert summary.merges_by_rule["probabilistic"] >= 90


def test_the_live_path_finds_a_person_a_batch_run_made_by_any_identifier(
    context: Context, workspace: Workspace, tmp_path: Path
) -> None:
    from memberops.identity.service import resolve_customer

    _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,,\nr2,,ana@x.com,\nr3,13800138001,ana@x.com,\n")
    members = _resolve(context, workspace)
    with context.store.transaction() as session:
        by_email = resolve_customer(session, workspace, channel="app", source_id="u1", identifiers={"email": "ANA@x.com"})
        by_phone = resolve_customer(session, workspace, channel="pos", source_id="p1",
                                    identifiers={"phone": "138 0013 8001"})
    assert by_email.member.id == by_phone.member.id == members["crm/r1"]
    assert not by_email.is_new_member and not by_phone.is_new_member
