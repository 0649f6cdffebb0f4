"""CLV fits from CSV files: a per-customer summary or raw transactions, read with pyarrow (no row loop)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from numpy.typing import NDArray

from memberops.errors import Invalid
from memberops.insight import clv
from memberops.insight.clv_data import TimeUnit, summary_from_transactions

Model = Literal["bgnbd", "pareto-nbd"]
MODELS: tuple[Model, ...] = ("bgnbd", "pareto-nbd")


class ClvFileInvalid(Invalid):
    """A CSV given to ``clv fit`` lacks a column, or a column holds something other than it should."""

    code = "clv_file_invalid"


@dataclass(frozen=True)
class ClvFitResult:
    """What ``memberops clv fit`` prints: the model, its fit and, if asked, the Gamma–Gamma spend fit."""

    model: Model
    fit: clv.BGNBDFit | clv.ParetoNBDFit
    spend: clv.GammaGammaFit | None = None

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"model": self.model, "n": self.fit.n, "params": self.fit.params.as_dict(),
                                    "log_likelihood": self.fit.log_likelihood}
        if self.spend is not None:
            document["spend"] = self.spend.params.as_dict()
        return document


def _read(path: Path) -> pa.Table:
    try:
        return pa_csv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ClvFileInvalid(f"cannot read {path.name} as CSV: {exc}", file=str(path)) from exc


def _column(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ClvFileInvalid(f"{path.name} has no column {name!r} (columns: {', '.join(table.column_names)})",
                             column=name)
    column = table.column(name)
    if column.null_count:
        raise ClvFileInvalid(f"column {name!r} has {column.null_count} empty values", column=name)
    return column


def _numbers(table: pa.Table, name: str, path: Path) -> NDArray[np.float64]:
    column = _column(table, name, path)
    try:
        numbers = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ClvFileInvalid(f"column {name!r} is not numeric ({column.type})", column=name) from exc
    return np.asarray(numbers.to_numpy(), dtype=np.float64)


def _dates(table: pa.Table, name: str, path: Path) -> NDArray[np.datetime64]:
    column = _column(table, name, path)
    kind = column.type
    try:
        if pa.types.is_integer(kind):  # 19970101, as the CDNOW files have it
            column = pc.strptime(pc.cast(column, pa.string()), format="%Y%m%d", unit="s")
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = pc.cast(column, pa.timestamp("s"))
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            column = pc.cast(column, pa.timestamp(kind.unit))  # the UTC instant, its UTC date
        elif not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
            raise pa.ArrowInvalid(f"type {kind}")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ClvFileInvalid(f"column {name!r} holds values that are not dates (ISO 8601 or YYYYMMDD): {exc}",
                             column=name) from exc
    return np.asarray(column.to_numpy(), dtype="datetime64[s]")


def _fit(model: Model, frequency: NDArray[np.float64], recency: NDArray[np.float64], T: NDArray[np.float64],
         monetary_value: NDArray[np.float64] | None) -> ClvFitResult:
    if model not in MODELS:
        raise ClvFileInvalid(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    fit: clv.BGNBDFit | clv.ParetoNBDFit
    fit = (clv.fit_bgnbd(frequency, recency, T) if model == "bgnbd"
           else clv.fit_pareto_nbd(frequency, recency, T))
    spend = clv.fit_gamma_gamma(frequency, monetary_value) if monetary_value is not None else None
    return ClvFitResult(model, fit, spend)


def _whole_numbers(table: pa.Table, name: str, path: Path) -> NDArray[np.float64]:
    """A count column: a fraction there means the file is not what it should be (columns swapped, say)."""
    numbers = _numbers(table, name, path)
    fractional = np.isfinite(numbers) & (numbers != np.floor(numbers))
    if fractional.any():
        row = int(np.argmax(fractional))
        raise ClvFileInvalid(f"column {name!r} counts repeat purchases, so it takes whole numbers; "
                             f"{int(fractional.sum())} values are not (the first: {numbers[row]:g})", column=name)
    return numbers


def _calibration_end(value: str | None) -> np.datetime64 | None:
    """The calibration end as a day, in the formats the date column takes: ISO 8601 (an aware time counts
    by its UTC date, as the transactions do) or YYYYMMDD — which numpy would read as the year 19,970,930."""
    if value is None:
        return None
    try:
        if len(value) == 8 and value.isdigit():
            return np.datetime64(datetime.strptime(value, "%Y%m%d").date(), "D")
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ClvFileInvalid(f"the calibration end {value!r} is not a date (ISO 8601 or YYYYMMDD)",
                             field="calibration_end") from None
    day = moment.astimezone(UTC).date() if moment.tzinfo is not None else moment.date()
    return np.datetime64(day, "D")


def fit_summary_file(path: Path, *, model: Model = "bgnbd", spend: bool = False) -> ClvFitResult:
    """Fit a CSV with columns ``frequency,recency,T`` (and ``monetary_value`` for ``spend``); ``frequency``, the
    number of repeat purchases, takes whole numbers."""
    table = _read(path)
    frequency = _whole_numbers(table, "frequency", path)
    recency, T = (_numbers(table, name, path) for name in ("recency", "T"))
    monetary = _numbers(table, "monetary_value", path) if spend else None
    return _fit(model, frequency, recency, T, monetary)


def fit_transactions_file(path: Path, *, customer_col: str, date_col: str, amount_col: str | None = None,
                          calibration_end: str | None = None, time_unit: TimeUnit = "D",
                          model: Model = "bgnbd", spend: bool = False) -> ClvFitResult:
    """Summarise a CSV of transactions per customer (see ``summary_from_transactions``), then fit it."""
    if spend and amount_col is None:
        raise ClvFileInvalid("a spend fit needs the amounts: give --amount-col")
    end = _calibration_end(calibration_end)
    table = _read(path)
    customers = _column(table, customer_col, path).combine_chunks()
    # integer codes: np.unique over them is far cheaper than over a million Python strings
    codes = pc.dictionary_encode(customers).indices.to_numpy(zero_copy_only=False)
    dates = _dates(table, date_col, path)
    amounts = _numbers(table, amount_col, path) if amount_col is not None else None
    summary = summary_from_transactions(codes, dates, amounts, calibration_end=end, time_unit=time_unit)
    return _fit(model, summary.frequency, summary.recency, summary.T, summary.monetary_value if spend else None)
