"""How traits are computed: windows, thresholds and maps an operator may change (pydantic, with defaults).

Everything that decides a member's RFM segment, lifecycle stage, next-purchase window, CLV or KOC score
is read from an :class:`InsightConfig`, so a run is reproducible from ``(facts, config, as_of)``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RFM_SEGMENTS = (
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
)

# Rows: R score 5 → 1; columns: FM score 1 → 5 (FM = the mean of F and M, half up).
# Putler's 11 segments ("RFM Analysis For Successful Customer Segmentation", putler.com/rfm-analysis)
# are given there as overlapping R/FM ranges; each cell below is the segment whose ranges contain it,
# the more specific range winning where two do (e.g. R5·FM1 is "New", not "Potential Loyalist").
DEFAULT_RFM_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Champions"),
    3: ("Promising", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("About to Sleep", "Hibernating", "At Risk", "At Risk", "At Risk"),
    1: ("Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"),
}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RfmConfig(_Config):
    window_days: int = Field(default=365, ge=1, description="only purchases in the last N days count for RFM")
    grid: dict[int, tuple[str, str, str, str, str]] = Field(default_factory=lambda: dict(DEFAULT_RFM_GRID))

    @field_validator("grid")
    @classmethod
    def _every_r_score(cls, grid: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
        if sorted(grid) != [1, 2, 3, 4, 5]:
            raise ValueError("the RFM grid needs one row for each R score 1..5")
        return grid

    def segment(self, r: int, fm: int) -> str:
        return self.grid[r][fm - 1]


class LifecycleConfig(_Config):
    new_days: int = Field(default=90, ge=1, description="first purchase within N days: new")
    loyal_orders: int = Field(default=3, ge=2, description="at least K orders in the loyal window: loyal")
    loyal_window_days: int = Field(default=365, ge=1)
    at_risk_days: int = Field(default=180, ge=1, description="no purchase for longer than X days: at risk")
    churned_days: int = Field(default=365, ge=1, description="no purchase for longer than Y days: churned")
    at_risk_p_alive: float = Field(default=0.3, ge=0, le=1, description="repeat buyers with P(alive) below this: at risk")
    interest_days: int = Field(default=30, ge=1, description="AIPL: interest events within N days: interested")
    interest_events: tuple[str, ...] = ("product_view", "add_to_cart", "coupon_claim")

    @model_validator(mode="after")
    def _churn_after_risk(self) -> LifecycleConfig:
        if self.churned_days <= self.at_risk_days:
            raise ValueError("churned_days must be longer than at_risk_days")
        return self


class ValueConfig(_Config):
    """CLV: BG/NBD for purchases and P(alive), Gamma–Gamma for spend (``memberops.insight.clv``)."""

    horizon_months: int = Field(default=12, ge=1, le=120)
    monthly_discount_rate: float = Field(default=0.0, ge=0, lt=1, description="e.g. 0.01 per month")
    min_buyers: int = Field(default=20, ge=3, description="fewer repeat-model inputs than this: no CLV is fitted")


class KocConfig(_Config):
    """score = 100 · (1 − exp(−points / scale)); points = converted·w_c + other referrals·w_r + shares·w_s
    + referred net spend ÷ the brand's order value (each order's worth of referred buying is a point)."""

    window_days: int = Field(default=365, ge=1, description="shares counted over the last N days")
    converted_weight: float = 3.0
    referral_weight: float = 1.0
    share_weight: float = 0.2
    scale: float = Field(default=10.0, gt=0)


class InsightConfig(_Config):
    rfm: RfmConfig = RfmConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    value: ValueConfig = ValueConfig()
    koc: KocConfig = KocConfig()
    offline_channels: tuple[str, ...] = ("pos",)
    uncounted_statuses: tuple[str, ...] = Field(default=("created", "cancelled"), description="orders that are no purchase")
