"""The benchmark harness loads bench files the way Python imports modules."""

from __future__ import annotations

from pathlib import Path

from memberops.benchmarks import Benchmark, load_benchmarks

BENCH_FILE = '''
from __future__ import annotations

from dataclasses import dataclass

from memberops.benchmarks import Benchmark


@dataclass
class Sizes:
    rows: int


SIZES = Sizes(rows=3)

BENCHMARKS = [
    Benchmark(
        name="sum_rows", description="sum", baseline_name="builtin sum",
        setup=lambda quick: list(range(SIZES.rows)), ours=sum, baseline=sum,
    )
]
'''


def test_a_bench_file_may_define_dataclasses_under_postponed_annotations(tmp_path: Path) -> None:
    (tmp_path / "bench_sizes.py").write_text(BENCH_FILE)

    found = load_benchmarks(tmp_path)

    assert [b.name for b in found] == ["sum_rows"]
    assert isinstance(found[0], Benchmark)
