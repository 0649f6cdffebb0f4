"""Insight pages: the last computation's overview, tags and the insight settings. Every role may read them;
admins and marketers create, edit and delete tags; admins edit the settings.

A tag's rule is written as YAML (the language of ``memberops tags apply``) and goes through
:func:`memberops.insight.tagging.save_tag_text`: validated (each problem shown next to its field, rule
problems with their line), versioned and audited. A change applies at the next insight computation; the
member counts shown are the last computation's.

The settings (RFM window and grid, lifecycle rules, CLV, KOC …) are edited as YAML like the loyalty
programme (``web/loyalty.py``) and go through :func:`memberops.insight.config_store.update_text`:
validated, saved as a new version and audited; on an error nothing is saved and each problem names its
line. The form carries the version it was opened on, so a save over a colleague's newer version is
refused (409) rather than silently undo it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, Response

from memberops.accounts.service import Role
from memberops.api.errors import status_for
from memberops.insight import config_store, tagging
from memberops.insight.errors import InvalidInsightConfig, InvalidTag, TagExists, TagNotFound
from memberops.insight.overview import insight_overview
from memberops.insight.tags import TAG_NAME
from memberops.settings_versions import SettingsConflict
from memberops.web.rendering import ConsoleRoute, error_page, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

router = APIRouter(prefix="/insight", route_class=ConsoleRoute, include_in_schema=False)

EDITORS = (Role.admin, Role.marketer)
ConsolePage = Annotated[Operator, Depends(require_role())]
EditorForm = Annotated[Operator, Depends(require_form(*EDITORS))]
AdminForm = Annotated[Operator, Depends(require_form(Role.admin))]
RULE_EXAMPLE = "all:\n  - trait: orders\n    op: gte\n    value: 2\n  - trait: discount_share\n    op: gte\n    value: 0.3\n"


@dataclass
class TagForm:
    """A tag form as sent (or fresh), with its problems by field (``name``, ``description``, ``rule``)."""

    name: str = ""
    description: str = ""
    rule: str = ""
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def failed(cls, name: str, description: str, rule: str, problems: list[dict[str, Any]]) -> TagForm:
        form = cls(name, description, rule)
        for problem in problems:
            form.errors.setdefault(problem.get("field") or "form", []).append(problem)
        return form


def _can_edit(operator: Operator) -> bool:
    return operator.user.role in EDITORS


def _tags_page(request: Request, session: ConsoleSession, operator: Operator, *, form: TagForm | None = None,
               status_code: int = 200, saved: str = "", deleted: str = "") -> Response:
    overview = tagging.tags_overview(session, operator.workspace.id)
    return render(request, "insight/tags.html", status_code=status_code, operator=operator, active="tags",
                  overview=overview, can_edit=_can_edit(operator), form=form or TagForm(), rule_example=RULE_EXAMPLE,
                  saved=saved, deleted=deleted)


@router.get("")
def overview_page(request: Request, session: ConsoleSession, operator: ConsolePage) -> Response:
    """The last insight computation: members per lifecycle stage, AIPL stage, RFM segment and tag (every
    stage listed, empty ones too), the CLV fit, and the newest trait changes."""
    overview = insight_overview(session, operator.workspace.id)
    return render(request, "insight/overview.html", operator=operator, active="insight", overview=overview)


@router.get("/tags")
def tags_page(request: Request, session: ConsoleSession, operator: ConsolePage, saved: str = "",
              deleted: str = "") -> Response:
    """Every current tag with its rule and member count; a form to create one (admins, marketers)."""
    # the notice repeats a name from the URL: only a tag name, so a crafted link cannot make it say more
    saved, deleted = (name if TAG_NAME.match(name) else "" for name in (saved, deleted))
    return _tags_page(request, session, operator, saved=saved, deleted=deleted)


@router.post("/tags")
def create_tag(
    request: Request, session: ConsoleSession, operator: EditorForm,
    name: Annotated[str, Form()] = "", description: Annotated[str, Form()] = "", rule: Annotated[str, Form()] = "",
) -> Response:
    """Create a tag; a name a current tag has is refused (409) rather than overwrite its rule."""
    name, description = name.strip(), description.strip()
    try:
        tagging.save_tag_text(session, operator.workspace.id, name=name, description=description, rule_text=rule,
                              is_new=True, actor=operator.actor)
    except InvalidTag as error:
        form = TagForm.failed(name, description, rule, error.facts.get("errors") or [{"message": error.message}])
        return _tags_page(request, session, operator, form=form, status_code=status_for(error))
    except TagExists as error:
        form = TagForm.failed(name, description, rule, [{"field": "name", "message": error.message}])
        return _tags_page(request, session, operator, form=form, status_code=status_for(error))
    return see_other(f"/insight/tags?saved={quote(name)}")


def _tag_page(request: Request, session: ConsoleSession, operator: Operator, name: str, *,
              form: TagForm | None = None, status_code: int = 200) -> Response:
    try:
        definition, row = tagging.get_tag(session, operator.workspace.id, name)
    except TagNotFound as error:
        return error_page(request, 404, "No such tag", f"{error.message}. It may have been deleted.", operator=operator)
    if form is None:
        form = TagForm(definition.name, definition.description, tagging.rule_yaml(row.rule))
    return render(request, "insight/tag.html", status_code=status_code, operator=operator, active="tags",
                  tag=row, can_edit=_can_edit(operator), form=form)


@router.get("/tags/{name}")
def tag_page(request: Request, session: ConsoleSession, operator: ConsolePage, name: str) -> Response:
    """One tag: its rule and version; an edit form for admins and marketers."""
    return _tag_page(request, session, operator, name)


@router.post("/tags/{name}")
def update_tag(
    request: Request, session: ConsoleSession, operator: EditorForm, name: str,
    description: Annotated[str, Form()] = "", rule: Annotated[str, Form()] = "",
) -> Response:
    """Change a tag's description or rule (a new version; unchanged: none)."""
    description = description.strip()
    try:
        tagging.save_tag_text(session, operator.workspace.id, name=name, description=description, rule_text=rule,
                              is_new=False, actor=operator.actor)
    except TagNotFound as error:
        return error_page(request, 404, "No such tag", f"{error.message}. It may have been deleted.", operator=operator)
    except InvalidTag as error:
        form = TagForm.failed(name, description, rule, error.facts.get("errors") or [{"message": error.message}])
        return _tag_page(request, session, operator, name, form=form, status_code=status_for(error))
    return see_other(f"/insight/tags?saved={quote(name)}")


@router.post("/tags/{name}/delete")
def delete_tag(request: Request, session: ConsoleSession, operator: EditorForm, name: str) -> Response:
    """Retire a tag (its versions are kept). Sending the form again finds it gone and says so (404)."""
    try:
        tagging.delete_tag(session, operator.workspace.id, name, actor=operator.actor)
    except TagNotFound as error:
        return error_page(request, 404, "No such tag", f"{error.message}. It may have been deleted already.",
                          operator=operator)
    return see_other(f"/insight/tags?deleted={quote(name)}")


def _settings_page(request: Request, session: ConsoleSession, operator: Operator, *, status_code: int = 200,
                   text: str | None = None, based_on: int | None = None, errors: list[dict[str, Any]] | None = None,
                   saved: int | None = None) -> Response:
    settings, version = config_store.current_version(session, operator.workspace.id)
    return render(request, "insight/settings.html", status_code=status_code, operator=operator, active="settings",
                  settings=settings, version=version, history=config_store.history(session, operator.workspace.id),
                  text=config_store.settings_yaml(settings) if text is None else text,
                  based_on=version if based_on is None else based_on, errors=errors or [], saved=saved)


@router.get("/settings")
def settings_page(request: Request, session: ConsoleSession, operator: ConsolePage, saved: int | None = None) -> Response:
    """The insight settings in force (RFM, lifecycle, CLV, KOC …), as YAML too, and their versions; admins edit."""
    return _settings_page(request, session, operator, saved=saved)


@router.post("/settings")
def update_settings(
    request: Request, session: ConsoleSession, operator: AdminForm,
    settings: Annotated[str, Form()] = "", based_on: Annotated[int | None, Form()] = None,
) -> Response:
    """Save the edited settings as a new version (audited), or show the form again with what is wrong."""
    try:
        _, version = config_store.update_text(session, operator.workspace.id, settings, based_on=based_on,
                                              actor=operator.actor)
    except InvalidInsightConfig as error:
        return _settings_page(request, session, operator, status_code=status_for(error), text=settings,
                              based_on=based_on, errors=error.facts["problems"])
    except SettingsConflict as error:
        return _settings_page(request, session, operator, status_code=status_for(error), text=settings,
                              based_on=based_on, errors=[{"field": "", "line": None, "message": error.message}])
    return see_other(f"/insight/settings?saved={version}")
