"""Identity pages: the review queue of likely duplicate records.

Every role may look; admins and marketers decide. A decision goes through the review service with the
operator as the actor (a merge or pin-apart decision, audited), applied at the next resolution run.
Contact details are shown as the member profile shows them (``web.members.shown``): in full to the roles
that contact or serve members, masked for analysts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from memberops.accounts.service import Role
from memberops.api.deps import ContextDep
from memberops.api.errors import status_for
from memberops.errors import DomainError
from memberops.identity import review
from memberops.ingest.live import members_by_customer_key
from memberops.web.members import shown
from memberops.web.rendering import ConsoleRoute, error_page, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

router = APIRouter(prefix="/identity", route_class=ConsoleRoute, include_in_schema=False)
DECIDERS = (Role.admin, Role.marketer)


@router.get("/review")
def review_page(
    request: Request, context: ContextDep, session: ConsoleSession,
    operator: Annotated[Operator, Depends(require_role())], decided: str = "",
) -> Response:
    """Open pairs, the most likely first, each record's newest attributes side by side, and the member each
    record belongs to now (a link to its profile)."""
    pairs = review.open_pairs(session, operator.workspace.id, limit=50)
    refs = [ref for p in pairs for ref in ((p.channel_a, p.source_id_a), (p.channel_b, p.source_id_b))]
    details = {ref: {field: shown(operator, field, value) for field, value in record.items()}
               for ref, record in review.record_details(context.warehouse(), operator.workspace.id, refs).items()}
    members = members_by_customer_key(session, operator.workspace.id, set(refs))
    return render(request, "identity/review.html", operator=operator, active="review", pairs=pairs,
                  details=details, members=members, fields=review.DETAIL_FIELDS, open_count=review.count_open(session, operator.workspace.id),
                  can_decide=operator.user.role in DECIDERS, decided=decided)


@router.post("/review/{pair_id}")
def decide(
    request: Request, session: ConsoleSession, pair_id: int,
    operator: Annotated[Operator, Depends(require_form(*DECIDERS))],
    decision: Annotated[str, Form()] = "",
) -> Response:
    """Accept (one person) or reject (two people) a pair."""
    if decision not in ("accept", "reject"):
        return error_page(request, 422, "Unknown decision", "Choose accept or reject.", operator=operator)
    try:
        review.decide_pair(session, operator.workspace, pair_id, accept=decision == "accept", actor=operator.actor)
    except DomainError as error:
        return error_page(request, status_for(error), "Cannot decide this pair", error.message, operator=operator)
    return see_other(f"/identity/review?decided={pair_id}")
