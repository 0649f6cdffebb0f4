"""Little Sprout's product catalogue and how an order's basket is filled from it.

The basket is built to a target: the purchase's spend from the Gamma–Gamma process, grossed up by the
day's promotion. Lines are chosen at list prices so the basket's gross is at least the spend; the gap
is the order's discount. So ``paid - shipping`` is exactly the sampled spend (to the cent), and a
Gamma–Gamma fit on it can recover the true parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BRAND = "Little Sprout"
BRAND_ZH = "小芽"

CATEGORIES = ("formula", "diapers", "wipes", "feeding", "baby_care", "newborn_gift", "toys")
CATEGORY_NAMES_ZH = ("奶粉", "纸尿裤", "湿巾", "喂养用品", "洗护", "新生儿礼盒", "玩具")
CATEGORY_WEIGHTS = np.array([0.34, 0.28, 0.10, 0.09, 0.11, 0.03, 0.05])
# How many of one product a single order line may hold (cases of formula, packs of diapers…).
MAX_QUANTITY = np.array([6, 6, 10, 3, 4, 2, 3])
FILLER_CATEGORIES = np.array([2, 4, 3, 6])  # wipes, baby care, feeding, toys: what tops a basket up


@dataclass(frozen=True)
class Catalogue:
    """Products sorted by (category, list price); prices in cents."""

    sku: np.ndarray
    name: np.ndarray
    category: np.ndarray  # index into CATEGORIES
    price: np.ndarray
    gift_sku: int  # index of the sample pack given away on promotion orders

    def __len__(self) -> int:
        return len(self.sku)

    def category_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        starts = np.searchsorted(self.category, np.arange(len(CATEGORIES)), side="left")
        ends = np.searchsorted(self.category, np.arange(len(CATEGORIES)), side="right")
        return starts, ends


def _products() -> list[tuple[str, str, str, float]]:
    rows: list[tuple[str, str, str, float]] = []
    for stage, price_800, price_400 in ((1, 368.0, 198.0), (2, 358.0, 188.0), (3, 338.0, 178.0), (4, 298.0, 158.0)):
        rows.append((f"LS-FM{stage}-800", f"小芽有机婴儿配方奶粉 {stage}段 800g", "formula", price_800))
        rows.append((f"LS-FM{stage}-400", f"小芽有机婴儿配方奶粉 {stage}段 400g", "formula", price_400))
    rows.append(("LS-FM1-800X3", "小芽有机婴儿配方奶粉 1段 800g×3罐", "formula", 1049.0))
    rows.append(("LS-FM2-800X3", "小芽有机婴儿配方奶粉 2段 800g×3罐", "formula", 1019.0))
    rows.append(("LS-FMA2-800", "小芽A2蛋白婴儿配方奶粉 2段 800g", "formula", 428.0))
    diapers = (("NB", 84, 129.0), ("S", 76, 129.0), ("M", 64, 139.0), ("L", 54, 139.0), ("XL", 46, 149.0), ("XXL", 40, 149.0))
    for size, count, price in diapers:
        rows.append((f"LS-DP-{size}", f"小芽云柔纸尿裤 {size}码 {count}片", "diapers", price))
    for size, count, price in (("L", 44, 119.0), ("XL", 38, 119.0), ("XXL", 32, 129.0)):
        rows.append((f"LS-PU-{size}", f"小芽成长拉拉裤 {size}码 {count}片", "diapers", price))
    rows.append(("LS-DP-TRIAL", "小芽纸尿裤试用装 S码 6片", "diapers", 9.9))
    rows += [
        ("LS-WP-80", "小芽婴儿手口湿巾 80抽", "wipes", 12.9),
        ("LS-WP-80X6", "小芽婴儿手口湿巾 80抽×6包", "wipes", 59.9),
        ("LS-WP-25X10", "小芽便携湿巾 25抽×10包", "wipes", 39.9),
        ("LS-WP-DRY", "小芽棉柔巾 100抽×3包", "wipes", 29.9),
        ("LS-FD-BTL160", "小芽宽口径PPSU奶瓶 160ml", "feeding", 129.0),
        ("LS-FD-BTL240", "小芽宽口径PPSU奶瓶 240ml", "feeding", 139.0),
        ("LS-FD-NIP", "小芽仿母乳奶嘴 2只装", "feeding", 45.0),
        ("LS-FD-CUP", "小芽重力球吸管杯 300ml", "feeding", 89.0),
        ("LS-FD-BOWL", "小芽吸盘辅食碗套装", "feeding", 69.0),
        ("LS-FD-WARM", "小芽恒温调奶器", "feeding", 299.0),
        ("LS-FD-SPOON", "小芽软头喂养勺 2支", "feeding", 25.0),
        ("LS-BC-LOTION", "小芽婴儿润肤乳 200ml", "baby_care", 79.0),
        ("LS-BC-WASH", "小芽洗发沐浴二合一 300ml", "baby_care", 69.0),
        ("LS-BC-BALM", "小芽护臀膏 50g", "baby_care", 49.0),
        ("LS-BC-CREAM", "小芽婴儿面霜 50g", "baby_care", 59.0),
        ("LS-BC-OIL", "小芽婴儿抚触油 100ml", "baby_care", 59.0),
        ("LS-BC-LAUNDRY", "小芽婴儿洗衣液 1L", "baby_care", 39.9),
        ("LS-BC-SUN", "小芽儿童防晒乳 SPF30", "baby_care", 89.0),
        ("LS-NG-SAMPLE", "小芽新客试用礼包", "newborn_gift", 29.9),
        ("LS-NG-BOX", "小芽新生儿礼盒", "newborn_gift", 399.0),
        ("LS-NG-MOON", "小芽满月礼盒", "newborn_gift", 599.0),
        ("LS-NG-HOSP", "小芽待产包 全套", "newborn_gift", 459.0),
        ("LS-TY-TEETH", "小芽硅胶牙胶", "toys", 39.0),
        ("LS-TY-RATTLE", "小芽手摇铃套装", "toys", 59.0),
        ("LS-TY-BOOK", "小芽宝宝布书", "toys", 49.0),
        ("LS-TY-MAT", "小芽XPE爬行垫", "toys", 299.0),
        ("LS-TY-BATH", "小芽洗澡玩具", "toys", 35.0),
    ]
    return rows


def build_catalogue() -> Catalogue:
    rows = _products()
    category = np.array([CATEGORIES.index(row[2]) for row in rows])
    price = np.array([round(row[3] * 100) for row in rows], dtype=np.int64)
    order = np.lexsort((price, category))
    skus = np.array([row[0] for row in rows], dtype=object)[order]
    return Catalogue(
        sku=skus,
        name=np.array([row[1] for row in rows], dtype=object)[order],
        category=category[order],
        price=price[order],
        gift_sku=int(np.flatnonzero(skus == "LS-NG-SAMPLE")[0]),
    )


@dataclass(frozen=True)
class Baskets:
    """Order lines for a batch of orders: ``order`` (index into the batch), ``line_no`` from 1, ``product``
    (catalogue index), ``quantity``, ``unit_price`` and ``amount`` in cents; per order ``gross``."""

    order: np.ndarray
    line_no: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray
    amount: np.ndarray
    gross: np.ndarray


def _product_in_range(rng: np.random.Generator, catalogue: Catalogue, category: np.ndarray, low: np.ndarray,
                      high: np.ndarray) -> np.ndarray:
    """A product of ``category`` priced in ``[low, high]``, uniformly; failing that the dearest one under
    ``low``, failing that the category's cheapest."""
    starts, ends = catalogue.category_bounds()
    # One sorted key per (category, price) lets a single searchsorted locate a price in any category.
    span = int(catalogue.price.max()) + 2
    keys = catalogue.category * span + catalogue.price
    below_low = np.searchsorted(keys, category * span + np.clip(low, 0, span - 1), side="left")
    up_to_high = np.searchsorted(keys, category * span + np.clip(high, 0, span - 1), side="right")
    in_range = up_to_high - below_low
    pick = below_low + (rng.random(len(category)) * np.maximum(in_range, 1)).astype(np.int64)
    pick = np.where(in_range > 0, pick, up_to_high - 1)
    return np.clip(pick, starts[category], ends[category] - 1)


def fill_baskets(rng: np.random.Generator, catalogue: Catalogue, spend: np.ndarray, discount_rate: np.ndarray,
                 main_category: np.ndarray, with_gift: np.ndarray) -> Baskets:
    """Lines for orders whose spend (cents) and promotion rate are given; ``gross >= spend`` for every order.

    A main line from the buyer's category sized to the list-price target ``spend / (1 - rate)``, a filler
    line topping the basket up to at least the target, and a free sample pack on promotion orders flagged
    ``with_gift``. A target below the category's cheapest product buys wipes instead; one beyond what a
    full line of the category can hold stocks up on formula.
    """
    n = len(spend)
    target = np.ceil(spend / (1.0 - discount_rate)).astype(np.int64)
    starts, ends = catalogue.category_bounds()
    cheapest, dearest = catalogue.price[starts], catalogue.price[ends - 1]
    category = np.where(cheapest[main_category] > target, CATEGORIES.index("wipes"), main_category)
    category = np.where(MAX_QUANTITY[category] * dearest[category] < target, CATEGORIES.index("formula"), category)
    main = _product_in_range(rng, catalogue, category, target // MAX_QUANTITY[category], target)
    main_price = catalogue.price[main]
    main_quantity = np.clip(target // main_price, 1, MAX_QUANTITY[category])
    gap = target - main_quantity * main_price
    has_filler = gap > 0
    # Of a few candidate fillers, the one that overshoots the target least: the discount stays a discount.
    candidates = 3
    filler_category = FILLER_CATEGORIES[rng.integers(0, len(FILLER_CATEGORIES), (candidates, n))]
    fillers = np.stack([_product_in_range(rng, catalogue, filler_category[k], gap // 10, gap) for k in range(candidates)])
    prices = catalogue.price[fillers]
    quantities = np.maximum(-(-gap // prices), 1)
    best = np.argmin(quantities * prices, axis=0)
    filler = fillers[best, np.arange(n)]
    filler_price = catalogue.price[filler]
    filler_quantity = np.where(has_filler, quantities[best, np.arange(n)], 0)
    gross = main_quantity * main_price + filler_quantity * filler_price

    line_count = 1 + has_filler.astype(np.int64) + with_gift.astype(np.int64)
    order = np.repeat(np.arange(n), line_count)
    line_no = np.arange(len(order)) - np.repeat(np.cumsum(line_count) - line_count, line_count) + 1
    is_filler_line = (line_no == 2) & has_filler[order]
    is_gift_line = (line_no == line_count[order]) & with_gift[order]
    product = np.where(line_no == 1, main[order], np.where(is_filler_line, filler[order], catalogue.gift_sku))
    quantity = np.where(line_no == 1, main_quantity[order], np.where(is_filler_line, filler_quantity[order], 1))
    unit_price = np.where(is_gift_line, 0, catalogue.price[product])
    return Baskets(order=order, line_no=line_no, product=product, quantity=quantity, unit_price=unit_price,
                   amount=quantity * unit_price, gross=gross)
