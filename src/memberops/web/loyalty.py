"""Loyalty pages: the programme (admins edit it as YAML) and the points liability. Every role may read them.

An edit goes through :func:`memberops.loyalty.programmes.update_programme`: validated, saved as a new
version and audited; on an error nothing is saved and the page comes back with the text as sent and each
problem next to the line it is on. The form carries the version it was opened on, so an admin cannot
undo a colleague's change without seeing it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from memberops.accounts.service import Role
from memberops.api.errors import status_for
from memberops.loyalty import expiry, programmes
from memberops.loyalty.errors import InvalidProgramme, ProgrammeChanged
from memberops.web.rendering import ConsoleRoute, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

router = APIRouter(prefix="/loyalty", route_class=ConsoleRoute, include_in_schema=False)

ConsolePage = Annotated[Operator, Depends(require_role())]
AdminForm = Annotated[Operator, Depends(require_form(Role.admin))]
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _programme_page(request: Request, session: ConsoleSession, operator: Operator, *, status_code: int = 200,
                    text: str | None = None, based_on: int | None = None, errors: list[dict[str, object]] | None = None,
                    saved: int | None = None) -> Response:
    overview = programmes.programme_overview(session, operator.workspace.id)
    return render(request, "loyalty/programme.html", status_code=status_code, operator=operator, active="programme",
                  overview=overview, programme=overview.active.programme, weekdays=WEEKDAYS,
                  text=overview.text if text is None else text,
                  based_on=overview.active.version if based_on is None else based_on,
                  errors=errors or [], saved=saved)


@router.get("/programme")
def programme_page(request: Request, session: ConsoleSession, operator: ConsolePage, saved: int | None = None) -> Response:
    """The programme in force, read as settings and as YAML, and its version history; admins edit it."""
    return _programme_page(request, session, operator, saved=saved)


@router.post("/programme")
def update_programme(
    request: Request, session: ConsoleSession, operator: AdminForm,
    programme: Annotated[str, Form()] = "", based_on: Annotated[int | None, Form()] = None,
) -> Response:
    """Save the edited programme as a new version (audited), or show the form again with what is wrong."""
    try:
        active = programmes.update_programme(session, operator.workspace, programme, based_on=based_on,
                                             actor=operator.actor)
    except InvalidProgramme as error:
        return _programme_page(request, session, operator, status_code=status_for(error), text=programme,
                               based_on=based_on, errors=error.errors)
    except ProgrammeChanged as error:
        return _programme_page(request, session, operator, status_code=status_for(error), text=programme,
                               based_on=based_on, errors=[{"field": "", "line": None, "message": error.message}])
    return see_other(f"/loyalty/programme?saved={active.version}")


@router.get("/liability")
def liability_page(request: Request, session: ConsoleSession, operator: ConsolePage) -> Response:
    """Outstanding points × point value by the month they lapse in, with totals — the API's numbers."""
    report = expiry.points_liability(session, operator.workspace)
    return render(request, "loyalty/liability.html", operator=operator, active="liability", report=report)
