"""Probabilistic matching in the warehouse, on every engine: preparation, edit distances, blocking, scores.

The model is Fellegi & Sunter (1969), "A Theory for Record Linkage", JASA 64(328), trained as Splink's
documentation describes ("Estimating model parameters": u by random sampling, m by EM per blocking
rule with u fixed; "Term frequency adjustments"). The synthetic people below are made here, with
known duplicates: typos (homophones in Chinese given names, letters in Latin ones), swapped surname
and given name, birthdays a day off or missing, phones and e-mails mostly missing on the duplicates.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from memberops.identity.match_compiler import blocked_pairs, double, edit_distance, prepare_records
from memberops.identity.matching import MatchSettings, block_on
from memberops.identity.probabilistic import MatchResult, score_pairs
from memberops.lake.engine import DuckDBWarehouse, Warehouse

SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周")
GIVEN = ("婷", "丽", "静", "敏", "芳", "娜", "燕", "玲", "伟", "强", "磊", "军")
HOMOPHONE = {"婷": "庭", "丽": "莉", "静": "晶", "敏": "民", "芳": "方", "娜": "纳", "燕": "艳", "玲": "铃", "伟": "玮",
             "强": "墙", "磊": "垒", "军": "君"}
LATIN_GIVEN = ("john", "mary", "peter", "linda", "james", "susan", "robert", "karen", "michael", "nancy")
LATIN_SURNAMES = ("smith", "jones", "brown", "taylor", "wilson", "davies", "evans", "thomas", "roberts", "walker")
CITIES = ("上海市", "北京市", "广州市", "深圳市", "杭州市")
SCHEMA = pa.schema([
    ("node", pa.int64()), ("full_name", pa.string()), ("first_name", pa.string()), ("last_name", pa.string()),
    ("gender", pa.string()), ("birthday", pa.date32()), ("city", pa.string()), ("phone", pa.string()),
    ("email", pa.string()),
])
SETTINGS = MatchSettings(u_sample_pairs=20_000)


def people(count: int = 160, seed: int = 7) -> tuple[pa.Table, np.ndarray]:
    """Records of ``count`` people, one to three each, and each record's person."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    person: list[int] = []
    for p in range(count):
        latin = rng.random() < 0.3
        if latin:
            given, surname = str(rng.choice(LATIN_GIVEN)), str(rng.choice(LATIN_SURNAMES))
        else:
            given, surname = "".join(rng.choice(GIVEN, int(rng.integers(1, 3)))), str(rng.choice(SURNAMES))
        birthday = dt.date(1970, 1, 1) + dt.timedelta(days=int(rng.integers(0, 12_000)))
        city = str(rng.choice(CITIES))
        phone = f"+86{int(rng.integers(13_000_000_000, 13_999_999_999))}"
        email = f"{surname if latin else 'm'}{p}@qq.com" if rng.random() < 0.5 else None
        b: dt.date | None
        ph: str | None
        for copy in range(int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))):
            g, s, b, ph, em = given, surname, birthday, phone, email
            if copy:
                if rng.random() < 0.3:
                    if latin:
                        i = int(rng.integers(0, len(g)))
                        g = g[:i] + "x" + g[i + 1:]
                    else:
                        g = HOMOPHONE[g[0]] + g[1:]
                b = None if rng.random() < 0.2 else (b + dt.timedelta(days=1) if rng.random() < 0.1 else b)
                ph = None if rng.random() < 0.7 else ph
                em = None if rng.random() < 0.5 else em
                if rng.random() < 0.1:
                    g, s = s, g
            as_full = rng.random() < 0.6
            full = f"{g} {s}" if latin else f"{s}{g}"
            rows.append({"node": len(rows), "full_name": full if as_full else None,
                         "first_name": None if as_full else g, "last_name": None if as_full else s,
                         "gender": "female" if rng.random() < 0.8 else None, "birthday": b, "city": city,
                         "phone": ph, "email": em})
            person.append(p)
    return pa.Table.from_pylist(rows, schema=SCHEMA), np.array(person)


def true_pairs(person: np.ndarray) -> set[tuple[int, int]]:
    return {(a, b) for a, b in itertools.combinations(range(len(person)), 2) if person[a] == person[b]}


def f1(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> float:
    hits = len(predicted & truth)
    return 2 * hits / (len(predicted) + len(truth)) if predicted or truth else 1.0


def scored(warehouse: Warehouse, result: MatchResult) -> pa.Table:
    return warehouse.to_pyarrow(result.pairs.order_by(["node_l", "node_r"]))


def matched(table: pa.Table, threshold: float = 0.9) -> set[tuple[int, int]]:
    rows = table.filter(pc.greater_equal(table["match_probability"], threshold))
    return set(zip(rows["node_l"].to_pylist(), rows["node_r"].to_pylist(), strict=True))


class TestPrepareRecords:
    def test_names_split_for_chinese_and_latin_alike(self, warehouse: Warehouse) -> None:
        records = ibis.memtable(pa.Table.from_pylist([
            {"node": 0, "full_name": " 张 伟 ", "city": "上海市", "email": "ZhangWei@QQ.com"},
            {"node": 1, "full_name": "John  Smith", "city": "Sydney"},
            {"node": 2, "first_name": "伟", "last_name": "张"},
            {"node": 3, "first_name": "Mary", "last_name": "Jones"},
            {"node": 4, "full_name": "", "email": ""},
        ], schema=pa.schema([(n, pa.int64() if n == "node" else pa.string()) for n in
                             ("node", "full_name", "first_name", "last_name", "city", "email")])))
        rows = warehouse.to_pyarrow(prepare_records(records).order_by("node")).to_pylist()
        assert [(r["name"], r["surname"], r["given_name"]) for r in rows] == [
            ("张伟", "张", "伟"), ("johnsmith", "smith", "john"), ("张伟", "张", "伟"), ("maryjones", "jones", "mary"),
            (None, None, None),
        ]
        assert rows[0]["city"] == "上海" and rows[0]["email_local"] == "zhangwei" and rows[4]["email"] is None


class TestEditDistance:
    def test_counts_characters_on_every_engine(self, warehouse: Warehouse) -> None:
        cases = [("张伟", "张玮", 1), ("王婷婷", "王婷", 1), ("王婷", "婷王", 2), ("martha", "marhta", 2),
                 ("kitten", "sitting", 3), ("张伟", "张伟", 0), ("李", "王", 1)]
        table = ibis.memtable({"a": [a for a, _, _ in cases], "b": [b for _, b, _ in cases],
                               "i": list(range(len(cases)))})
        result = warehouse.to_pyarrow(table.select("i", d=edit_distance(table.a, table.b)).order_by("i"))
        assert result["d"].to_pylist() == [d for _, _, d in cases]


class TestWeightLiterals:
    def test_sums_of_weights_stay_doubles(self, warehouse: Warehouse) -> None:
        # bare, the first literal is a DECIMAL(16,14) and the second a DECIMAL(18,17): DuckDB's sum of the
        # two overflows (this is the sum a prior weight of -49.8 and a level weight made)
        table = ibis.memtable({"g": [0, 1]})
        total = double(-49.82892142331043) + ibis.cases((table.g == 1, double(-0.39949374844039354)), else_=double(0.0))
        result = warehouse.to_pyarrow(table.select("g", w=total).order_by("g"))["w"].to_pylist()
        assert result == pytest.approx([-49.82892142331043, -49.82892142331043 - 0.39949374844039354], abs=1e-12)


class TestBlocking:
    def test_each_pair_once_with_every_rule_it_satisfies(self, warehouse: Warehouse) -> None:
        records = ibis.memtable(pa.Table.from_pylist([
            {"node": 1, "city": "a", "phone": "111"}, {"node": 2, "city": "a", "phone": "111"},
            {"node": 3, "city": "a", "phone": "222"}, {"node": 4, "city": None, "phone": "222"},
        ], schema=pa.schema([("node", pa.int64()), ("city", pa.string()), ("phone", pa.string())])))
        prepared = prepare_records(records)
        rules = (block_on("city"), block_on("phone"))
        pairs = warehouse.to_pyarrow(blocked_pairs(prepared, rules))
        found = sorted(zip(pairs["node_l"].to_pylist(), pairs["node_r"].to_pylist(), pairs["mask"].to_pylist(), strict=True))
        assert found == [(1, 2, 0b11), (1, 3, 0b01), (2, 3, 0b01), (3, 4, 0b10)]


class TestScorePairs:
    def test_finds_duplicates_well_above_a_simple_rule(self, warehouse: Warehouse) -> None:
        table, person = people()
        result = score_pairs(warehouse, ibis.memtable(table), settings=SETTINGS)
        truth = true_pairs(person)
        ours = f1(matched(scored(warehouse, result)), truth)
        # the rule a clerk would write: same name (as typed) and same birthday
        name = [r["full_name"] or f"{r['last_name']}{r['first_name']}" for r in table.to_pylist()]
        birthday = table["birthday"].to_pylist()
        rule = {(a, b) for a, b in itertools.combinations(range(table.num_rows), 2)
                if birthday[a] is not None and name[a] == name[b] and birthday[a] == birthday[b]}
        assert ours >= 0.85
        assert ours >= f1(rule, truth) + 0.2

    def test_pairs_already_stitched_are_not_returned(self, warehouse: Warehouse) -> None:
        table, person = people()
        components = ibis.memtable(pa.table({  # deterministic stitching put each person's records together
            "node": pa.array(range(table.num_rows), pa.int64()), "component": pa.array(person, pa.int64())}))
        everything = SETTINGS.model_copy(update={"min_probability": 0.0})
        result = score_pairs(warehouse, ibis.memtable(table), settings=everything, exclude_same=components)
        rows = scored(warehouse, result)
        assert rows.num_rows > 0  # strangers sharing a block are still scored
        left, right = rows["node_l"].to_numpy(), rows["node_r"].to_numpy()
        assert (person[left] != person[right]).all()
        # stitched pairs are left out of the scores, not out of training: they are matches m learns from
        alone = score_pairs(warehouse, ibis.memtable(table), settings=everything)
        assert result.model.prior == pytest.approx(alone.model.prior, rel=1e-9)
        for excluding, plain in zip(result.model.comparisons, alone.model.comparisons, strict=True):
            assert excluding.m == pytest.approx(plain.m, rel=1e-9)

    def test_same_result_on_every_engine(self, warehouse: Warehouse, tmp_path: Path) -> None:
        table, _ = people(120, seed=11)
        here = score_pairs(warehouse, ibis.memtable(table), settings=SETTINGS)
        reference_engine = DuckDBWarehouse(tmp_path / "reference")
        reference_engine.refresh()
        try:
            reference = score_pairs(reference_engine, ibis.memtable(table), settings=SETTINGS)
            expected = scored(reference_engine, reference)
        finally:
            reference_engine.close()
        got = scored(warehouse, here)
        assert got.select(["node_l", "node_r", "rule"]).equals(expected.select(["node_l", "node_r", "rule"]))
        np.testing.assert_allclose(got["match_weight"].to_numpy(), expected["match_weight"].to_numpy(), rtol=1e-9)
        assert here.model.prior == pytest.approx(reference.model.prior, rel=1e-12)

    def test_strangers_only_still_score(self, warehouse: Warehouse) -> None:
        # namesakes in one city, nobody twice: the prior falls to its floor and the weights grow large;
        # their sums must stay doubles (bare decimal literals overflow DuckDB's DECIMAL scale)
        rows = [{"node": i, "full_name": f"王{GIVEN[i % 3]}", "city": "上海市", "gender": "female",
                 "birthday": dt.date(1980, 1, 1) + dt.timedelta(days=37 * i), "phone": f"+86139{i:08d}",
                 "first_name": None, "last_name": None, "email": None} for i in range(30)]
        result = score_pairs(warehouse, ibis.memtable(pa.Table.from_pylist(rows, schema=SCHEMA)),
                             settings=SETTINGS.model_copy(update={"min_probability": 0.0}))
        table = scored(warehouse, result)
        assert table.num_rows > 0 and result.model.prior < 1e-3
        assert np.isfinite(table["match_weight"].to_numpy()).all()
        assert (table["match_probability"].to_numpy() < 0.5).all()

    def test_the_fitted_model_is_reported(self, warehouse: Warehouse) -> None:
        table, _ = people(100, seed=3)
        model = score_pairs(warehouse, ibis.memtable(table), settings=SETTINGS).model
        assert 0 < model.prior < 0.5 and model.sessions and model.random_pairs > 0
        by_name = {c.name: c for c in model.comparisons}
        assert "postcode" not in by_name  # the records have no postcode: not compared
        for comparison in model.comparisons:
            assert sum(comparison.m) == pytest.approx(1.0) and sum(comparison.u) == pytest.approx(1.0)
            assert len(comparison.weights) == len(comparison.levels)
        exact_name = by_name["given_name"].weights[-1]
        assert exact_name > 0 > by_name["given_name"].weights[0]  # agreeing is evidence for, disagreeing against
