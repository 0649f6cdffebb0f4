"""`memberops clv fit` (the contract of issue 5), run through Typer's CliRunner on the CDNOW sample.

Reference values: Fader, Hardie & Lee (2005), Marketing Science 24(2) (BG/NBD, Pareto/NBD) and Fader &
Hardie (2013), brucehardie.com note 025 (Gamma–Gamma); see test_clv.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from typer.testing import CliRunner

from memberops.cli import app
from tests.insight.clv_data import CALIBRATION_END, cdnow_summary, cdnow_transactions

runner = CliRunner()


def _write(path: Path, columns: dict[str, list | object]) -> Path:
    pa_csv.write_csv(pa.table(columns), path)
    return path


@pytest.fixture
def summary_csv(tmp_path: Path) -> Path:
    s = cdnow_summary()
    return _write(tmp_path / "summary.csv", {"frequency": s.x, "recency": s.t_x, "T": s.T, "monetary_value": s.zbar})


@pytest.fixture
def transactions_csv(tmp_path: Path) -> Path:
    t = cdnow_transactions()
    return _write(tmp_path / "orders.csv", {
        "member": [f"m{i:05d}" for i in t.ids], "ordered_on": t.dates.astype(str), "amount": t.amounts})


def _fit(*args: str) -> dict:
    done = runner.invoke(app, ["clv", "fit", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _rounded(values: dict[str, float], digits: int) -> dict[str, float]:
    return {k: round(v, digits) for k, v in values.items()}


class TestFitSummary:
    def test_bgnbd(self, summary_csv: Path) -> None:
        result = _fit("--summary", str(summary_csv))
        assert set(result) == {"model", "n", "params", "log_likelihood"}
        assert result["model"] == "bgnbd" and result["n"] == 2357
        assert _rounded(result["params"], 3) == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
        assert round(result["log_likelihood"], 1) == -9582.4

    def test_pareto_nbd(self, summary_csv: Path) -> None:
        result = _fit("--summary", str(summary_csv), "--model", "pareto-nbd")
        assert result["model"] == "pareto-nbd"
        assert list(result["params"]) == ["r", "alpha", "s", "beta"]
        assert _rounded(result["params"], 2) == {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
        assert round(result["log_likelihood"], 1) == -9595.0

    def test_spend(self, summary_csv: Path) -> None:
        result = _fit("--summary", str(summary_csv), "--spend")
        assert _rounded(result["spend"], 2) == {"p": 6.25, "q": 3.74, "v": 15.45}  # z̄ rounded to cents


class TestFitTransactions:
    def test_weeks_from_days(self, transactions_csv: Path) -> None:
        """Days as the unit: α is in days (the weekly α × 7), the shape parameters are the published ones."""
        result = _fit("--transactions", str(transactions_csv), "--customer-col", "member", "--date-col",
                      "ordered_on", "--amount-col", "amount", "--calibration-end", CALIBRATION_END, "--spend")
        assert result["n"] == 2357
        params = result["params"]
        assert (round(params["r"], 3), round(params["a"], 3), round(params["b"], 3)) == (0.243, 0.793, 2.426)
        assert round(params["alpha"] / 7, 3) == 4.414
        assert _rounded(result["spend"], 2) == {"p": 6.25, "q": 3.74, "v": 15.44}

    def test_calendar_weeks(self, transactions_csv: Path) -> None:
        result = _fit("--transactions", str(transactions_csv), "--customer-col", "member", "--date-col",
                      "ordered_on", "--calibration-end", CALIBRATION_END, "--time-unit", "W")
        assert result["n"] == 2357 and "spend" not in result
        assert 0 < result["params"]["r"] < 1 and result["log_likelihood"] < 0

    def test_calibration_end_defaults_to_the_last_transaction(self, transactions_csv: Path) -> None:
        everything = _fit("--transactions", str(transactions_csv), "--customer-col", "member",
                          "--date-col", "ordered_on")
        assert everything["n"] == 2357
        calibration = _fit("--transactions", str(transactions_csv), "--customer-col", "member",
                           "--date-col", "ordered_on", "--calibration-end", CALIBRATION_END)
        assert everything["params"] != calibration["params"]

    def test_calibration_end_as_the_date_column_writes_it(self, transactions_csv: Path) -> None:
        """YYYYMMDD, as the CDNOW files write dates, is the same day as ISO 8601 (numpy alone would read the
        year 19,970,930 and put every transaction in the calibration period)."""
        args = ("--transactions", str(transactions_csv), "--customer-col", "member", "--date-col", "ordered_on")
        iso = _fit(*args, "--calibration-end", CALIBRATION_END)
        assert _fit(*args, "--calibration-end", CALIBRATION_END.replace("-", "")) == iso
        assert _fit(*args, "--calibration-end", f"{CALIBRATION_END}T23:00:00+00:00") == iso


class TestErrors:
    def _fails(self, *args: str) -> str:
        done = runner.invoke(app, ["clv", "fit", *args])
        assert done.exit_code != 0
        return " ".join(done.output.split())

    def test_missing_column(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 0], "recency": [1.0, 0.0]})
        assert "has no column 'T'" in self._fails("--summary", str(path))

    def test_spend_without_monetary_value(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 0], "recency": [1.0, 0.0], "T": [2.0, 2.0]})
        assert "has no column 'monetary_value'" in self._fails("--summary", str(path), "--spend")

    def test_negative_values(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, -2], "recency": [1.0, 0.0], "T": [2.0, 2.0]})
        assert "frequency has negative values" in self._fails("--summary", str(path))

    def test_recency_after_T(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 1], "recency": [3.0, 0.5], "T": [2.0, 2.0]})
        assert "recency exceeds T" in self._fails("--summary", str(path))

    def test_non_numeric(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 1], "recency": ["soon", "later"], "T": [2.0, 2.0]})
        assert "column 'recency' is not numeric" in self._fails("--summary", str(path))

    def test_empty_value(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 1], "recency": [1.0, None], "T": [2.0, 2.0]})
        assert "column 'recency' has 1 empty values" in self._fails("--summary", str(path))

    def test_fractional_frequency(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "s.csv", {"frequency": [1, 1.5], "recency": [1.0, 1.0], "T": [2.0, 2.0]})
        assert "column 'frequency' counts repeat purchases, so it takes whole numbers; 1 values are not " \
               "(the first: 1.5)" in self._fails("--summary", str(path))

    def test_bad_calibration_end(self, transactions_csv: Path) -> None:
        assert "the calibration end '30/09/1997' is not a date (ISO 8601 or YYYYMMDD)" in self._fails(
            "--transactions", str(transactions_csv), "--customer-col", "member", "--date-col", "ordered_on",
            "--calibration-end", "30/09/1997")

    def test_bad_dates(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "t.csv", {"c": ["a", "b"], "d": ["yesterday", "today"]})
        assert "column 'd' holds values that are not dates" in self._fails(
            "--transactions", str(path), "--customer-col", "c", "--date-col", "d")

    def test_transactions_need_their_columns(self, transactions_csv: Path) -> None:
        assert "needs --customer-col and --date-col" in self._fails("--transactions", str(transactions_csv))
        assert "has no column 'who'" in self._fails("--transactions", str(transactions_csv), "--customer-col",
                                                    "who", "--date-col", "ordered_on")

    def test_spend_needs_amounts(self, transactions_csv: Path) -> None:
        assert "give --amount-col" in self._fails("--transactions", str(transactions_csv), "--customer-col",
                                                  "member", "--date-col", "ordered_on", "--spend")

    def test_one_input(self, summary_csv: Path, transactions_csv: Path) -> None:
        assert "exactly one of" in self._fails()
        assert "exactly one of" in self._fails("--summary", str(summary_csv), "--transactions",
                                               str(transactions_csv))

    def test_unknown_model(self, summary_csv: Path) -> None:
        assert "pareto" in self._fails("--summary", str(summary_csv), "--model", "weibull")
