"""``memberops insight compute`` and ``memberops tags`` on the demo brand, as an operator runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from memberops.insight.lifecycle import AIPL_STAGES, STAGES


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBEROPS_")}
    env.update({"MEMBEROPS_DATA_DIR": str(data_dir), "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "memberops.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=data_dir.parent)


def counted(printed: str, row: str) -> int:
    """The count in a printed table's row (0 when the row is absent)."""
    line = next((line for line in printed.splitlines() if f" {row} " in line), None)
    return 0 if line is None else int(line.split("│")[-2].strip().replace(",", ""))


def test_demo_computes_insight_and_tags_are_edited_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "d"
    demo = run(data, "demo", "--no-serve", "--members", "600")
    assert demo.returncode == 0, demo.stderr
    assert "member insight as of" in demo.stdout and "lifecycle: prospect" in demo.stdout
    assert "tag: new_mom" in demo.stdout and "RFM segment:" in demo.stdout
    # the brand's history ends yesterday, so as of today it is alive: people browse without buying
    # (AIPL "interested", the window_shopper tag: views in the last 30 days) and new members arrive
    assert "history: " in demo.stdout and ", ended" not in demo.stdout
    assert counted(demo.stdout, "AIPL: interested") > 0 and counted(demo.stdout, "tag: window_shopper") > 0
    assert counted(demo.stdout, "lifecycle: new") > 0
    # every stage of the chain, in its order, and every AIPL stage, zeros included
    rows = re.findall(r"│ (lifecycle|AIPL): (\w+) +│ ([\d,]+)", demo.stdout)
    assert [(kind, stage) for kind, stage, _ in rows] == [
        *(("lifecycle", stage) for stage in STAGES), *(("AIPL", stage) for stage in AIPL_STAGES)]
    assert "RFM segment: none (no purchase in the RFM window)" in demo.stdout
    snapshots = list((data / "lake" / "derived" / "member_traits").glob("*.parquet"))
    assert len(snapshots) == 1
    traits = pq.read_table(snapshots[0], columns=["orders", "lifecycle_stage"]).to_pylist()
    assert any(row["orders"] > 0 for row in traits)
    assert {row["lifecycle_stage"] for row in traits if row["orders"] == 0} == {"prospect"}

    listed = run(data, "tags", "list")
    assert listed.returncode == 0 and "formula_regular" in listed.stdout

    tag_file = tmp_path / "tags.yaml"
    tag_file.write_text("tags:\n  - name: big_basket\n    description: many items per order\n"
                        "    rule: {trait: items_per_order, op: gte, value: 3}\n")
    applied = run(data, "tags", "apply", str(tag_file))
    assert applied.returncode == 0 and "big_basket: version 1" in applied.stdout
    assert "big_basket: unchanged" in run(data, "tags", "apply", str(tag_file)).stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("tags:\n  - name: x\n    rule: {trait: nope, op: gt, value: 1}\n")
    refused = run(data, "tags", "apply", str(bad))
    assert refused.returncode == 2 and "unknown trait" in refused.stderr

    computed = run(data, "insight", "compute", "--as-of", "2026-01-01T00:00:00+00:00")
    assert computed.returncode == 0, computed.stderr
    assert "as of 2026-01-01T00:00:00+00:00" in computed.stdout and "tag: big_basket" in computed.stdout

    assert run(data, "tags", "delete", "big_basket").returncode == 0
    assert run(data, "tags", "delete", "big_basket").returncode == 3
    assert run(data, "insight", "compute", "--as-of", "yesterday").returncode == 2
