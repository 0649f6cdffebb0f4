"""The benchmark harness behind ``memberops bench``.

A benchmark module is a ``bench_*.py`` file in the bench folder defining ``BENCHMARKS``, a list of
:class:`Benchmark`. Each benchmark prepares its input once, then times our implementation and its
baseline (the peer at its best, as its own documentation would have it) alternately in the same
process, and reports the median of each and the ratio baseline ÷ ours (above 1: we are faster).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Benchmark:
    name: str
    description: str
    baseline_name: str
    setup: Callable[[bool], Any]  # (quick) -> input shared by both sides
    ours: Callable[[Any], Any]
    baseline: Callable[[Any], Any]
    check: Callable[[Any, Any], None] | None = None  # asserts both sides computed the same thing
    repeats: int = 5
    teardown: Callable[[Any], None] | None = None
    unit_of_work: str = ""


@dataclass
class BenchResult:
    name: str
    ours_seconds: float
    baseline_seconds: float
    baseline_name: str
    unit_of_work: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Baseline time over ours: 2.0 means we take half the baseline's time."""
        return self.baseline_seconds / self.ours_seconds if self.ours_seconds else float("inf")


def find_bench_dir() -> Path:
    """``./bench`` if it exists, else the ``bench`` folder of the source checkout memberops runs from."""
    local = Path.cwd() / "bench"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "bench"


def load_bench_module(path: Path) -> ModuleType:
    """The module in the bench folder at ``path``, loaded once per process (the bench folder is not on
    ``sys.path``): a benchmark file, or a helper the benchmark files share (``bench/loadgen.py``)."""
    name = f"memberops_bench_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: dataclasses and typing resolve their own module.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_benchmarks(directory: Path) -> list[Benchmark]:
    found: list[Benchmark] = []
    for path in sorted(directory.glob("bench_*.py")):
        found.extend(getattr(load_bench_module(path), "BENCHMARKS", []))
    return found


def run_one(benchmark: Benchmark, *, quick: bool = False) -> BenchResult:
    """Time ``benchmark``: ours and baseline alternate so drift in the machine hits both alike."""
    data = benchmark.setup(quick)
    try:
        ours_result = benchmark.ours(data)  # warm-up, and the values the check compares
        baseline_result = benchmark.baseline(data)
        if benchmark.check is not None:
            benchmark.check(ours_result, baseline_result)
        ours: list[float] = []
        baseline: list[float] = []
        for _ in range(1 if quick else benchmark.repeats):
            for side, samples in ((benchmark.ours, ours), (benchmark.baseline, baseline)):
                started = time.perf_counter()
                side(data)
                samples.append(time.perf_counter() - started)
    finally:
        if benchmark.teardown is not None:
            benchmark.teardown(data)
    return BenchResult(benchmark.name, statistics.median(ours), statistics.median(baseline),
                       benchmark.baseline_name, benchmark.unit_of_work, {"ours": ours, "baseline": baseline})


def run_benchmarks(directory: Path, names: Sequence[str], *, quick: bool, console: Console) -> list[str]:
    """Run the benchmarks named (all if none), print a table; returns the names that failed."""
    benchmarks = load_benchmarks(directory)
    unknown = set(names) - {b.name for b in benchmarks}
    if unknown:
        console.print(f"[red]unknown benchmarks: {', '.join(sorted(unknown))}[/red]; "
                      f"known: {', '.join(b.name for b in benchmarks)}")
        return sorted(unknown)
    table = Table("benchmark", "work", "ours (s)", "baseline", "baseline (s)", "ratio (baseline/ours)")
    failed: list[str] = []
    for benchmark in benchmarks:
        if names and benchmark.name not in names:
            continue
        console.print(f"running {benchmark.name}: {benchmark.description}")
        try:
            result = run_one(benchmark, quick=quick)
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others' figures
            console.print(f"[red]{benchmark.name} failed: {exc!r}[/red]")
            failed.append(benchmark.name)
            continue
        table.add_row(result.name, result.unit_of_work, f"{result.ours_seconds:.3f}", result.baseline_name,
                      f"{result.baseline_seconds:.3f}", f"{result.ratio:.2f}×")
    console.print(table)
    return failed
