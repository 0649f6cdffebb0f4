"""What probabilistic matching compares, and how it picks candidate pairs: engine-free definitions.

A :class:`Comparison` turns a pair of records into one comparison-vector value ``gamma``: ``-1`` when
either side is missing, ``len(levels)`` for the first (closest) level that holds, down to ``1`` for the
last, and ``0`` ("else") when none holds — Splink's convention, so a higher level is more alike. A
:class:`BlockingRule` names the columns two records must share to be compared at all.

Nothing here knows an engine: ``identity/match_compiler.py`` compiles these definitions to Ibis
expressions (the same ones run on DuckDB and PySpark), ``identity/fellegi_sunter.py`` estimates the
model from the pattern counts the warehouse returns, ``identity/probabilistic.py`` runs the whole.

Columns are the *prepared* ones (``match_compiler.prepare_records``): trimmed, lower-cased, empty as
null, names split into ``surname`` and ``given_name`` for Latin and Chinese names alike.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The prepared columns, by family: two columns of one family carry the same information (a block on
# ``name`` fixes ``surname`` and ``given_name`` too), which matters when a comparison is trained inside
# a block (see ``MatchSettings``).
FAMILIES: dict[str, str] = {
    "name": "name", "surname": "name", "given_name": "name",
    "birthday": "birthday", "gender": "gender",
    "phone": "phone", "email": "email", "email_local": "email",
    "city": "city", "province": "city", "postcode": "postcode",
    "street_number": "address", "address": "address",
    "wechat_openid": "wechat_openid", "buyer_id": "buyer_id",
    "wechat_unionid": "wechat_unionid", "member_card_no": "member_card_no",
}


def family_of(column: str) -> str:
    """The family of a prepared column (a column of its own when it is not a known one)."""
    return FAMILIES.get(column, column)


class _Definition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Level(_Definition):
    label: str = ""

    def _default_label(self) -> str:
        return ""

    @property
    def title(self) -> str:
        """How reports name the level: its ``label``, or one made from its parameters."""
        return self.label or self._default_label()


class ExactLevel(_Level):
    """The two values are equal (``column`` overrides the comparison's column, e.g. an e-mail's local part)."""

    kind: Literal["exact"] = "exact"
    column: str | None = None
    label: str = "exact"


class SwappedLevel(_Level):
    """Two fields entered the wrong way round: ``l.column = r.other`` and ``l.other = r.column``."""

    kind: Literal["swapped"] = "swapped"
    other: str
    label: str = "swapped"


class EditDistanceLevel(_Level):
    """At most ``distance`` single-character edits apart, counted in characters (not bytes) on every engine.

    Latin text: Levenshtein distance. Other text (Chinese names): substitutions position by position
    and one inserted or dropped character, for values up to ``probabilistic.MAX_POSITIONAL`` characters.
    A date is compared as its ``YYYYMMDD`` text, so a mistyped digit is one edit.
    """

    kind: Literal["edit_distance"] = "edit_distance"
    distance: int = Field(ge=1, le=3)

    def _default_label(self) -> str:
        return f"edit distance <= {self.distance}"


class SimilarityLevel(_Level):
    """``1 - edit distance / longer length`` at least ``similarity`` (0..1)."""

    kind: Literal["similarity"] = "similarity"
    similarity: float = Field(gt=0, lt=1)

    def _default_label(self) -> str:
        return f"similarity >= {self.similarity:g}"


class PrefixLevel(_Level):
    """The first ``chars`` characters are equal (a hierarchical address, a postcode's area)."""

    kind: Literal["prefix"] = "prefix"
    chars: int = Field(ge=1)

    def _default_label(self) -> str:
        return f"first {self.chars} equal"


class SuffixLevel(_Level):
    """The last ``chars`` characters are equal (a phone's subscriber number written with another prefix)."""

    kind: Literal["suffix"] = "suffix"
    chars: int = Field(ge=1)

    def _default_label(self) -> str:
        return f"last {self.chars} equal"


class DateWithinLevel(_Level):
    """Two dates at most ``days`` apart."""

    kind: Literal["date_within"] = "date_within"
    days: int = Field(ge=1)

    def _default_label(self) -> str:
        return f"within {self.days} days"


class DateTransposedLevel(_Level):
    """Day and month swapped (``1990-03-04`` against ``1990-04-03``)."""

    kind: Literal["date_transposed"] = "date_transposed"
    label: str = "day and month swapped"


Level = Annotated[
    ExactLevel | SwappedLevel | EditDistanceLevel | SimilarityLevel | PrefixLevel | SuffixLevel | DateWithinLevel
    | DateTransposedLevel,
    Field(discriminator="kind"),
]


class Comparison(_Definition):
    """One field of the comparison vector: its levels from the closest down; null and "else" are implicit.

    ``term_frequency``: an exact match on a common value (王, 上海市, a store's shared phone) weighs less
    than one on a rare value — the exact level's u becomes the value's frequency (Splink's term-frequency
    adjustment).
    """

    name: str
    column: str
    levels: tuple[Level, ...]
    term_frequency: bool = False
    # the m of a comparison no training session could estimate (every blocking rule fixes it)
    default_m: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Comparison:
        if not self.levels:
            raise ValueError(f"comparison {self.name!r} needs at least one level")
        if self.term_frequency and not isinstance(self.levels[0], ExactLevel):
            raise ValueError(f"comparison {self.name!r}: term frequencies adjust an exact first level")
        if self.default_m is not None and len(self.default_m) != len(self.levels) + 1:
            raise ValueError(f"comparison {self.name!r}: default_m needs one value per level and one for else")
        return self

    @property
    def gamma_column(self) -> str:
        return f"gamma_{self.name}"

    @property
    def level_labels(self) -> tuple[str, ...]:
        """Labels indexed by gamma: ``[0]`` is "else", ``[len(levels)]`` the closest level."""
        return ("else", *(level.title for level in reversed(self.levels)))

    @property
    def columns(self) -> frozenset[str]:
        """Every prepared column the comparison reads."""
        used = {self.column}
        for level in self.levels:
            if isinstance(level, ExactLevel) and level.column:
                used.add(level.column)
            if isinstance(level, SwappedLevel):
                used.add(level.other)
        return frozenset(used)

    @property
    def families(self) -> frozenset[str]:
        return frozenset(family_of(c) for c in self.columns)


class BlockingKey(_Definition):
    """One part of a blocking rule: a column, or its first / last ``chars`` characters."""

    column: str
    prefix: int | None = Field(default=None, ge=1)
    suffix: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_cut(self) -> BlockingKey:
        if self.prefix is not None and self.suffix is not None:
            raise ValueError("a blocking key takes a prefix or a suffix, not both")
        return self

    @property
    def label(self) -> str:
        if self.prefix:
            return f"{self.column}[:{self.prefix}]"
        if self.suffix:
            return f"{self.column}[-{self.suffix}:]"
        return self.column


class BlockingRule(_Definition):
    """Records equal on every key (and none null) are compared. Rules are tried in order; a pair
    found by an earlier rule is not produced again (Splink's deduplication of blocked pairs)."""

    keys: tuple[BlockingKey, ...]

    @model_validator(mode="after")
    def _not_empty(self) -> BlockingRule:
        if not self.keys:
            raise ValueError("a blocking rule needs at least one key")
        return self

    @property
    def name(self) -> str:
        return " & ".join(key.label for key in self.keys)

    @property
    def families(self) -> frozenset[str]:
        return frozenset(family_of(key.column) for key in self.keys)


def block_on(*keys: str | BlockingKey) -> BlockingRule:
    """``block_on("birthday", BlockingKey(column="surname", prefix=1))``: a rule from column names or keys."""
    return BlockingRule(keys=tuple(BlockingKey(column=k) if isinstance(k, str) else k for k in keys))


def _name_comparisons() -> tuple[Comparison, ...]:
    return (
        Comparison(name="surname", column="surname", term_frequency=True, levels=(
            ExactLevel(), EditDistanceLevel(distance=1), SimilarityLevel(similarity=0.7),
        )),
        Comparison(name="given_name", column="given_name", term_frequency=True, levels=(
            ExactLevel(), SwappedLevel(other="surname"), EditDistanceLevel(distance=1),
            SimilarityLevel(similarity=0.7), PrefixLevel(chars=1),
        )),
    )


DEFAULT_COMPARISONS: tuple[Comparison, ...] = (
    *_name_comparisons(),
    Comparison(name="birthday", column="birthday", levels=(
        ExactLevel(), EditDistanceLevel(distance=1), DateTransposedLevel(), DateWithinLevel(days=31),
        DateWithinLevel(days=366),
    )),
    Comparison(name="gender", column="gender", levels=(ExactLevel(),)),
    Comparison(name="phone", column="phone", term_frequency=True, levels=(
        ExactLevel(), SuffixLevel(chars=8), EditDistanceLevel(distance=1),
    )),
    Comparison(name="email", column="email", levels=(
        ExactLevel(), ExactLevel(column="email_local", label="same local part"), EditDistanceLevel(distance=1),
    )),
    Comparison(name="city", column="city", term_frequency=True, levels=(ExactLevel(),)),
    Comparison(name="postcode", column="postcode", term_frequency=True, levels=(
        ExactLevel(), EditDistanceLevel(distance=1),
    )),
    Comparison(name="street_number", column="street_number", levels=(ExactLevel(),)),
    Comparison(name="address", column="address", term_frequency=True, levels=(
        ExactLevel(), SimilarityLevel(similarity=0.8), PrefixLevel(chars=6),
    )),
    Comparison(name="buyer_id", column="buyer_id", levels=(
        ExactLevel(), EditDistanceLevel(distance=1), EditDistanceLevel(distance=2),
    )),
    Comparison(name="wechat_openid", column="wechat_openid", levels=(ExactLevel(),)),
    # Strong identifiers link deterministically; here a *different* unionid or card is evidence apart.
    Comparison(name="wechat_unionid", column="wechat_unionid", levels=(ExactLevel(),)),
    Comparison(name="member_card_no", column="member_card_no", levels=(ExactLevel(),)),
)

_SURNAME_INITIAL = BlockingKey(column="surname", prefix=1)
DEFAULT_BLOCKING_RULES: tuple[BlockingRule, ...] = (
    block_on("name", "city"),
    block_on("birthday", _SURNAME_INITIAL),
    block_on("birthday", "postcode"),
    block_on("birthday", "city"),
    block_on(BlockingKey(column="phone", suffix=8)),
    block_on("email_local"),
    block_on("postcode", _SURNAME_INITIAL),
    block_on("postcode", "street_number"),
    block_on("buyer_id"),
    block_on("wechat_openid"),
    block_on("wechat_unionid"),
    block_on("member_card_no"),
)


class MatchSettings(_Definition):
    """How probabilistic matching compares, blocks, trains and keeps pairs; defaults suit member records.

    Training (Fellegi & Sunter 1969, as Splink does it): u per level from ``u_sample_pairs`` random
    pairs; m by expectation maximisation inside each blocking rule's pairs, leaving out the
    comparisons that rule fixes (a block on birthday says nothing about how often matches share a
    birthday); the prior (two random records match) from the fitted model unless ``prior`` is given.
    """

    comparisons: tuple[Comparison, ...] = DEFAULT_COMPARISONS
    blocking_rules: tuple[BlockingRule, ...] = DEFAULT_BLOCKING_RULES
    u_sample_pairs: int = Field(default=100_000, ge=1_000)
    seed: int = 42
    # u among non-matches: take the matches out of the agreement shares (``fellegi_sunter.non_match_u``)
    correct_u: bool = True
    prior: float | None = Field(default=None, gt=0, lt=1)
    max_em_iterations: int = Field(default=40, ge=1)
    em_tolerance: float = Field(default=1e-5, gt=0)
    # pairs scoring below this probability are not returned at all
    min_probability: float = Field(default=0.01, ge=0, lt=1)
    # for the caller: at or above ``match_threshold`` merge, in [review_threshold, match_threshold) review
    match_threshold: float = Field(default=0.9, gt=0, lt=1)
    review_threshold: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> MatchSettings:
        names = [c.name for c in self.comparisons]
        if len(set(names)) != len(names):
            raise ValueError("comparison names must be unique")
        if not self.comparisons:
            raise ValueError("at least one comparison is needed")
        if not self.blocking_rules:
            raise ValueError("at least one blocking rule is needed")
        if len(self.blocking_rules) > 62:
            raise ValueError("at most 62 blocking rules")
        if self.review_threshold > self.match_threshold:
            raise ValueError("review_threshold must not exceed match_threshold")
        return self
