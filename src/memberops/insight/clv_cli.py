"""``memberops clv``: fit the CLV models on a CSV and print the estimates as JSON."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from memberops.errors import DomainError

clv_app = typer.Typer(help="Customer lifetime value: BG/NBD, Pareto/NBD and Gamma–Gamma fits.",
                      no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width


class ModelName(StrEnum):
    bgnbd = "bgnbd"
    pareto_nbd = "pareto-nbd"


class TimeUnitName(StrEnum):
    D = "D"
    W = "W"


@clv_app.command("fit")
def fit(
    summary: Annotated[Path | None, typer.Option(
        "--summary", exists=True, dir_okay=False,
        help="CSV with columns frequency,recency,T[,monetary_value], one row per customer")] = None,
    transactions: Annotated[Path | None, typer.Option(
        "--transactions", exists=True, dir_okay=False, help="CSV with one row per transaction")] = None,
    customer_col: Annotated[str | None, typer.Option("--customer-col", help="customer id column")] = None,
    date_col: Annotated[str | None, typer.Option("--date-col", help="date column (ISO 8601 or YYYYMMDD)")] = None,
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="amount column (for --spend)")] = None,
    calibration_end: Annotated[str | None, typer.Option(
        "--calibration-end", help="last date of the calibration period (default: the last transaction)")] = None,
    time_unit: Annotated[TimeUnitName, typer.Option("--time-unit", help="D: days, W: Monday–Sunday weeks")] = (
        TimeUnitName.D),
    model: Annotated[ModelName, typer.Option("--model", help="purchase-count model")] = ModelName.bgnbd,
    spend: Annotated[bool, typer.Option("--spend", help="also fit Gamma–Gamma spend on repeat customers")] = False,
) -> None:
    """Fit BG/NBD (or Pareto/NBD) by maximum likelihood and print the parameters as JSON."""
    from memberops.cli import EXIT_CODES
    from memberops.insight import clv_files

    if (summary is None) == (transactions is None):
        err.print("[red]error[/red]: give exactly one of --summary FILE or --transactions FILE")
        raise typer.Exit(2)
    try:
        if summary is not None:
            result = clv_files.fit_summary_file(summary, model=model.value, spend=spend)
        elif transactions is None or customer_col is None or date_col is None:
            err.print("[red]error[/red]: --transactions needs --customer-col and --date-col")
            raise typer.Exit(2)
        else:
            result = clv_files.fit_transactions_file(
                transactions, customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                calibration_end=calibration_end, time_unit=time_unit.value, model=model.value, spend=spend)
    except DomainError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)) from None
    print(json.dumps(result.as_json()))  # plain print: machine-readable, no wrapping or markup
