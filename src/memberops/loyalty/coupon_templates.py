"""Coupon templates: what coupons of a kind give (versioned terms) and how they are issued (stock,
per-member limit, shared code). Every change is audited; new terms make a new version, and a coupon keeps
the terms of the version it was issued under."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.loyalty import coupon_rules as rules
from memberops.loyalty.coupon_errors import (
    CouponTemplateExists,
    CouponTemplateNotFound,
    InvalidCouponTemplate,
)
from memberops.loyalty.coupon_models import Coupon, CouponTemplate, CouponTemplateVersion
from memberops.loyalty.coupon_schemas import (
    CouponTemplateIn,
    CouponTemplateOut,
    CouponTemplateUpdate,
    CouponTerms,
)


def create_template(session: Session, workspace_id: str, spec: CouponTemplateIn, *, actor: Actor) -> CouponTemplate:
    """A new template at version 1 (audited). Its code and shared code are unique in the workspace."""
    shared = rules.normalise_code(spec.shared_code) if spec.shared_code else None
    if _template_by_code(session, workspace_id, spec.code) is not None:
        raise CouponTemplateExists("code", spec.code)
    if shared and session.scalar(select(CouponTemplate.id).where(
            CouponTemplate.workspace_id == workspace_id, CouponTemplate.shared_code == shared)) is not None:
        raise CouponTemplateExists("shared_code", shared)
    if shared and session.scalar(select(Coupon.id).where(
            Coupon.workspace_id == workspace_id, Coupon.unique_code == shared)) is not None:
        raise CouponTemplateExists("shared_code", shared)
    now = utcnow()
    template = CouponTemplate(
        workspace_id=workspace_id, code=spec.code, name=spec.name, description=spec.description, shared_code=shared,
        stock=spec.stock, per_member_limit=spec.per_member_limit, version=1, created_at=now, updated_at=now,
    )
    session.add(template)
    session.flush()
    session.add(CouponTemplateVersion(template_id=template.id, version=1, terms=spec.terms.model_dump(mode="json"),
                                      created_at=now))
    session.flush()
    record(session, actor, "coupon_template.create", workspace_id=workspace_id, target_type="coupon_template",
           target_id=template.id, detail={"code": template.code, "kind": spec.terms.kind, "version": 1})
    return template


def update_template(
    session: Session, workspace_id: str, template_ref: str, change: CouponTemplateUpdate, *, actor: Actor
) -> CouponTemplate:
    """Apply ``change`` (audited). New ``terms`` make a new version; issued coupons keep the terms they
    were issued with. The stock never drops below what was issued."""
    template = lock_template(session, get_template(session, workspace_id, template_ref))
    changed: dict[str, object] = {}
    if change.stock is not None and change.stock < template.issued_count:
        raise InvalidCouponTemplate(f"stock cannot drop below the {template.issued_count} coupons issued", "stock")
    for name in ("name", "description", "stock", "per_member_limit", "status"):
        value = getattr(change, name)
        if value is not None and value != getattr(template, name):
            setattr(template, name, value)
            changed[name] = value if name not in ("name", "description") else "changed"
    if change.terms is not None and change.terms != terms_of(session, template.id, template.version):
        template.version += 1
        session.add(CouponTemplateVersion(template_id=template.id, version=template.version,
                                          terms=change.terms.model_dump(mode="json"), created_at=utcnow()))
        changed["version"] = template.version
    if changed:
        template.updated_at = utcnow()
        session.flush()
        record(session, actor, "coupon_template.update", workspace_id=workspace_id, target_type="coupon_template",
               target_id=template.id, detail={"code": template.code, **changed})
    return template


def get_template(session: Session, workspace_id: str, template_ref: str) -> CouponTemplate:
    """The template whose id or code is ``template_ref``."""
    template = session.get(CouponTemplate, template_ref)
    if template is not None and template.workspace_id == workspace_id:
        return template
    template = _template_by_code(session, workspace_id, template_ref)
    if template is None:
        raise CouponTemplateNotFound(template_ref)
    return template


def list_templates(session: Session, workspace_id: str, *, include_archived: bool = True) -> Sequence[CouponTemplate]:
    query = select(CouponTemplate).where(CouponTemplate.workspace_id == workspace_id)
    if not include_archived:
        query = query.where(CouponTemplate.status == "active")
    return session.scalars(query.order_by(CouponTemplate.code)).all()


_TERMS = select(CouponTemplateVersion.terms).where(CouponTemplateVersion.template_id == bindparam("template_id"),
                                                   CouponTemplateVersion.version == bindparam("version"))
# A template version is never changed once written (an edit writes the next version), and template ids are
# UUIDv7s unique across stores, so parsed terms can be kept: a redeem then reads no terms from the store.
_TERMS_CACHE: dict[tuple[str, int], CouponTerms] = {}
TERMS_CACHE_SIZE = 4096


def terms_of(session: Session, template_id: str, version: int) -> CouponTerms:
    """The terms of one version of a template."""
    cached = _TERMS_CACHE.get((template_id, version))
    if cached is not None:
        return cached
    document = session.scalar(_TERMS, {"template_id": template_id, "version": version})
    if document is None:
        raise CouponTemplateNotFound(f"{template_id} v{version}")
    terms = CouponTerms.model_validate(document)
    if len(_TERMS_CACHE) >= TERMS_CACHE_SIZE:
        _TERMS_CACHE.clear()
    _TERMS_CACHE[(template_id, version)] = terms
    return terms


def template_view(session: Session, template: CouponTemplate) -> CouponTemplateOut:
    return CouponTemplateOut(
        id=template.id, code=template.code, name=template.name, description=template.description,
        shared_code=template.shared_code, stock=template.stock, per_member_limit=template.per_member_limit,
        issued_count=template.issued_count, status=template.status, version=template.version,
        terms=terms_of(session, template.id, template.version), created_at=template.created_at,
        updated_at=template.updated_at,
    )


def _template_by_code(session: Session, workspace_id: str, code: str) -> CouponTemplate | None:
    return session.scalar(select(CouponTemplate).where(CouponTemplate.workspace_id == workspace_id,
                                                       CouponTemplate.code == code))


def lock_template(session: Session, template: CouponTemplate) -> CouponTemplate:
    """Re-read ``template`` under a row lock held to the end of the transaction: issues of one template
    queue here, so the stock and the per-member limit are checked against what others committed."""
    locked_template = session.scalar(locked(select(CouponTemplate).where(CouponTemplate.id == template.id))
                                     .execution_options(populate_existing=True))
    assert locked_template is not None
    return locked_template
