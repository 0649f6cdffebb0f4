"""The CDNOW sample (Fader & Hardie; see data/README.md), loaded for the CLV tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.csv as pa_csv

DATA = Path(__file__).parent / "data"
SUMMARY_CSV = DATA / "cdnow_customers_summary_with_transactions.csv"
SAMPLE_TXT = DATA / "CDNOW_sample.txt"
CALIBRATION_END = "1997-09-30"  # 39 weeks after 1997-01-01, the calibration period of the papers


class Summary(NamedTuple):
    ids: np.ndarray
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    zbar: np.ndarray


class Transactions(NamedTuple):
    ids: np.ndarray
    dates: np.ndarray
    amounts: np.ndarray


@cache
def cdnow_summary() -> Summary:
    """2,357 customers, weeks: repeat transactions, time of the last, time observed, mean repeat spend."""
    table = pa_csv.read_csv(SUMMARY_CSV)
    return Summary(*(table.column(c).to_numpy().astype(np.float64 if c != "ID" else np.int64)
                     for c in ("ID", "x", "t_x", "T", "zbar")))


@cache
def cdnow_transactions() -> Transactions:
    """The 6,919 transactions behind the summary (to 1998-06-30)."""
    # columns (whitespace-aligned): master-file id, sample id, date YYYYMMDD, CDs, dollars
    rows = np.loadtxt(SAMPLE_TXT, dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in rows[:, 2]], dtype="datetime64[D]")
    return Transactions(rows[:, 1].astype(np.int64), dates, rows[:, 4].astype(np.float64))
