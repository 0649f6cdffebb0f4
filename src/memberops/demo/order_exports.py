"""Orders, order lines and refunds in each selling channel's own layout.

Tmall's exports have Chinese headers and GB18030 text (as 千牛 writes them), JD's use slashes in dates
and ``;`` between coupon codes, the stores' POS writes English headers and receipt numbers per store
and day. The presets in ``ingest/presets/<channel>/`` map each onto the canonical fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberops.demo.catalogue import CATEGORIES, CATEGORY_NAMES_ZH
from memberops.demo.people import CITIES, household_phones, names
from memberops.demo.records import CHANNELS, JD, TMALL
from memberops.demo.text import blank_where, concat, digits, money, pick, scramble, timestamps
from memberops.demo.world import COUPON_CODES, World

STATUS_TEXT = {
    "tmall": ("等待买家付款", "买家已付款，等待卖家发货", "卖家已发货，等待买家确认", "交易成功", "交易关闭", "交易关闭"),
    "jd": ("等待付款", "等待出库", "等待确认收货", "完成", "已取消", "已退款"),
    "pos": ("OPEN", "PAID", "PAID", "COMPLETED", "VOID", "RETURNED"),
}
COUPON_SEPARATOR = {"tmall": ",", "jd": ";", "pos": "|"}
STREETS = ("人民路", "中山路", "解放路", "建设路", "和平路", "新华路", "长江路", "花园路", "学院路", "滨江大道")
REFUND_REASONS_ZH = ("七天无理由退换货", "商品破损", "拍错/多拍", "效果不好/不喜欢", "价格保护")


@dataclass(frozen=True)
class Keys:
    """Order and refund ids of every channel, aligned with ``world.orders`` and its refunds."""

    order_id: pa.Array
    refund_id: pa.Array


def _slices(channel: np.ndarray) -> list[slice]:
    bounds = np.searchsorted(channel, np.arange(len(CHANNELS[:3]) + 1))
    return [slice(int(bounds[c]), int(bounds[c + 1])) for c in range(3)]


def make_keys(world: World) -> Keys:
    rng = np.random.default_rng([world.seed, 30])
    orders = world.orders
    parts = []
    for channel, part in enumerate(_slices(orders.channel)):
        k = np.arange(part.start, part.stop)
        if channel == TMALL:  # 19 digits, like the marketplace's own
            parts.append(concat("2", digits(rng.integers(0, 10**6, len(k)), 6), digits(scramble(k, 12, salt=31), 12)))
        elif channel == JD:  # 12 digits
            parts.append(digits(scramble(k, 11, salt=32) + 2 * 10**11))
        else:  # store, day and the till's running number: SH01-251111-0042
            parts.append(_receipt_numbers(world, part))
    refunds = orders.refunds
    refund_channel = orders.channel[refunds.order]
    refund_parts = []
    for channel, part in enumerate(_slices(refund_channel)):
        k = np.arange(part.start, part.stop)
        if channel == TMALL:
            refund_parts.append(concat("1", digits(rng.integers(0, 10**5, len(k)), 5), digits(scramble(k, 12, salt=33), 12)))
        elif channel == JD:
            refund_parts.append(digits(scramble(k, 9, salt=34) + 10**9))
        else:
            refund_parts.append(concat("RT", digits(scramble(k, 8, salt=35), 8)))
    return Keys(order_id=pa.concat_arrays(parts), refund_id=pa.concat_arrays(refund_parts))


def _receipt_numbers(world: World, part: slice) -> pa.Array:
    orders = world.orders
    store, seconds = orders.store[part], orders.seconds[part]
    day = world.clock.day_of(seconds)
    key = store * world.clock.days + day
    order = np.lexsort((seconds, key))
    sorted_key = key[order]
    group_start = np.flatnonzero(np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]]))
    sizes = np.diff(np.append(group_start, len(order)))
    running = np.empty(len(order), dtype=np.int64)
    running[order] = np.arange(len(order)) - np.repeat(group_start, sizes) + 1
    return concat(pick(world.stores.store_id, store), "-", timestamps(seconds, "%y%m%d"), "-", digits(running, 4))


def _coupon_codes(world: World, index: np.ndarray, separator: str) -> pa.Array:
    orders = world.orders
    festival = orders.festival[index]
    festival_discount = world.clock.discount[world.clock.day_of(orders.seconds[index])]
    prefixes = [f.coupon_prefix for f in world.clock.festivals]
    festival_code = blank_where(concat(pick(prefixes, np.maximum(festival, 0)), "-", timestamps(orders.seconds[index], "%Y")),
                                (festival < 0) | (festival_discount <= 0) | ~orders.is_transaction[index])
    coupon = orders.coupon[index]
    other = blank_where(pick(COUPON_CODES, coupon), coupon == 0)
    # Not binary_join_element_wise(null_handling="skip"): pyarrow 26 drops rows where every part is null.
    both = concat(festival_code, separator, other)
    return pc.coalesce(both, festival_code, other)


def _order_lines(world: World, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per order: how many lines and how many pieces."""
    baskets = world.orders.baskets
    lines = np.bincount(baskets.order, minlength=len(world.orders))[index]
    pieces = np.bincount(baskets.order, weights=baskets.quantity, minlength=len(world.orders)).astype(np.int64)[index]
    return lines, pieces


def _refunded(world: World, index: np.ndarray) -> np.ndarray:
    refunds = world.orders.refunds
    return np.bincount(refunds.order, weights=refunds.amount, minlength=len(world.orders)).astype(np.int64)[index]


def _masked_phone(rng: np.random.Generator, world: World, person: np.ndarray) -> pa.Array:
    """Marketplaces show the receiver's number masked: 138****8000."""
    text = digits(household_phones(rng, world.people, person, 0.5), 11)
    return concat(pc.utf8_slice_codeunits(text, 0, 3), "****", pc.utf8_slice_codeunits(text, 7, 11))


def _address(rng: np.random.Generator, world: World, person: np.ndarray) -> pa.Array:
    city = world.people.city[person]
    street = pick(STREETS, rng.integers(0, len(STREETS), len(person)))
    return concat(pick([c[0] for c in CITIES], city), " ", pick([c[1] for c in CITIES], city), " ", street,
                  digits(rng.integers(1, 999, len(person))), "号")


def _main_titles(world: World, index: np.ndarray, lines: np.ndarray) -> pa.Array:
    baskets = world.orders.baskets
    first_line = np.searchsorted(baskets.order, index, side="left")
    title = pick(list(world.catalogue.name), baskets.product[first_line])
    more = concat(title, " 等", digits(lines), "件商品")
    return pc.if_else(pa.array(lines > 1), more, title)


def orders_table(world: World, channel: str, keys: Keys) -> pa.Table:
    rng = np.random.default_rng([world.seed, 40 + CHANNELS.index(channel)])
    o = world.orders
    index = np.arange(len(o))[_slices(o.channel)[CHANNELS.index(channel)]]
    person, n = o.person[index], len(index)
    customer_key = world.records[channel].source_id.take(pa.array(o.record[index]))
    status = pick(STATUS_TEXT[channel], o.status[index])
    ordered = o.seconds[index]
    coupons = _coupon_codes(world, index, COUPON_SEPARATOR[channel])
    lines, pieces = _order_lines(world, index)
    if channel == "tmall":
        surname, given = names(rng, world.people, person, 0.02)
        paid_at = blank_where(timestamps(ordered + rng.integers(5, 900, n), "%Y-%m-%d %H:%M:%S"), ~o.is_transaction[index])
        return pa.table({
            "订单编号": keys.order_id.take(pa.array(index)),
            "买家会员名": customer_key,
            "买家支付宝账号": _masked_phone(rng, world, person),
            "总金额": money(o.gross[index]),
            "优惠": money(o.discount[index]),
            "运费": money(o.shipping[index]),
            "买家实际支付金额": money(o.paid[index]),
            "订单状态": status,
            "订单创建时间": timestamps(ordered, "%Y-%m-%d %H:%M:%S"),
            "订单付款时间": paid_at,
            "宝贝标题": _main_titles(world, index, lines),
            "宝贝种类": pa.array(lines),
            "宝贝总数量": pa.array(pieces),
            "收货人姓名": concat(surname, given),
            "联系手机": _masked_phone(rng, world, person),
            "收货地址": _address(rng, world, person),
            "店铺名称": pa.array(np.full(n, "小芽官方旗舰店")),
            "店铺优惠券": coupons,
            "退款金额": money(_refunded(world, index)),
        })
    if channel == "jd":
        surname, given = names(rng, world.people, person, 0.02)
        return pa.table({
            "订单号": keys.order_id.take(pa.array(index)),
            "下单帐号": customer_key,
            "下单时间": timestamps(ordered, "%Y/%m/%d %H:%M:%S"),
            "订单状态": status,
            "订单金额": money(o.gross[index]),
            "优惠金额": money(o.discount[index]),
            "运费金额": money(o.shipping[index]),
            "应付金额": money(o.paid[index]),
            "优惠券": coupons,
            "订单类型": pa.array(np.full(n, "普通订单")),
            "支付方式": pa.array(np.full(n, "在线支付")),
            "客户姓名": concat(surname, given),
            "联系电话": _masked_phone(rng, world, person),
            "客户地址": _address(rng, world, person),
        })
    store = o.store[index]
    return pa.table({
        "Receipt No": keys.order_id.take(pa.array(index)),
        "Customer ID": customer_key,
        "Store": pick(world.stores.store_id, store),
        "Date": timestamps(ordered, "%Y-%m-%d %H:%M"),
        "Status": status,
        "Gross": money(o.gross[index]),
        "Discount": money(o.discount[index]),
        "Net": money(o.paid[index]),
        "Coupons": coupons,
        "Associate": concat(pick(world.stores.store_id, store), "-", digits(world.associate[person] + 1, 2)),
        "Payment": pick(["WeChat Pay", "Alipay", "UnionPay", "Cash"], rng.choice(4, n, p=[0.55, 0.3, 0.12, 0.03])),
    })


def items_table(world: World, channel: str, keys: Keys) -> pa.Table:
    o, catalogue = world.orders, world.catalogue
    b = o.baskets
    line = np.flatnonzero(o.channel[b.order] == CHANNELS.index(channel))
    product = b.product[line]
    order_id = keys.order_id.take(pa.array(b.order[line]))
    sku = pick(list(catalogue.sku), product)
    title = pick(list(catalogue.name), product)
    if channel == "tmall":
        return pa.table({
            "订单编号": order_id, "序号": pa.array(b.line_no[line]), "商家编码": sku, "标题": title,
            "类目": pick(CATEGORY_NAMES_ZH, catalogue.category[product]), "价格": money(b.unit_price[line]),
            "购买数量": pa.array(b.quantity[line]), "商品金额": money(b.amount[line]),
        })
    if channel == "jd":
        return pa.table({
            "订单号": order_id, "序号": pa.array(b.line_no[line]), "商品编号": digits(100_012_345_000 + product * 7_919),
            "商家SKU": sku, "商品名称": title, "订购数量": pa.array(b.quantity[line]), "京东价": money(b.unit_price[line]),
            "小计": money(b.amount[line]),
        })
    return pa.table({
        "Receipt No": order_id, "Line": pa.array(b.line_no[line]), "SKU": sku, "Description": title,
        "Category": pick(CATEGORIES, catalogue.category[product]), "Qty": pa.array(b.quantity[line]),
        "Unit Price": money(b.unit_price[line]), "Line Total": money(b.amount[line]),
    })


def refunds_table(world: World, channel: str, keys: Keys) -> pa.Table:
    rng = np.random.default_rng([world.seed, 50 + CHANNELS.index(channel)])
    o, catalogue = world.orders, world.catalogue
    refunds = o.refunds
    rows = np.flatnonzero(o.channel[refunds.order] == CHANNELS.index(channel))
    order, n = refunds.order[rows], len(rows)
    has_item = refunds.product[rows] >= 0
    sku = blank_where(pick(list(catalogue.sku), np.maximum(refunds.product[rows], 0)), ~has_item)
    quantity = pa.array(refunds.quantity[rows], mask=~has_item)
    refund_id = keys.refund_id.take(pa.array(rows))
    order_id = keys.order_id.take(pa.array(order))
    done = refunds.seconds[rows]
    requested = np.maximum(done - rng.integers(600, 3 * 86_400, n), o.seconds[order] + 60)
    amount = money(refunds.amount[rows])
    # Why: a full refund is a return or a wrong order; a part of a line is a return; the rest price protection.
    reason = np.where(refunds.is_full[rows], rng.integers(0, 4, n), np.where(has_item, rng.integers(0, 4, n), 4))
    if channel == "tmall":
        return pa.table({
            "退款编号": refund_id, "订单编号": order_id,
            "买家会员名称": world.records["tmall"].source_id.take(pa.array(o.record[order])),
            "商家编码": sku, "退款数量": quantity, "买家实际支付金额": money(o.paid[order]), "买家退款金额": amount,
            "退款申请时间": timestamps(requested, "%Y-%m-%d %H:%M:%S"), "退款完结时间": timestamps(done, "%Y-%m-%d %H:%M:%S"),
            "退款状态": pa.array(np.full(n, "退款成功")), "退款原因": pick(REFUND_REASONS_ZH, reason),
        })
    if channel == "jd":
        kind = np.where(refunds.is_full[rows] | has_item, np.where(has_item, 0, 1), 2)
        return pa.table({
            "服务单号": refund_id, "订单号": order_id, "商家SKU": sku, "申请数量": quantity, "退款金额": amount,
            "服务类型": pick(["退货", "仅退款", "价保"], kind), "申请时间": timestamps(requested, "%Y/%m/%d %H:%M:%S"),
            "退款时间": timestamps(done, "%Y/%m/%d %H:%M:%S"), "处理状态": pa.array(np.full(n, "完成")),
        })
    return pa.table({
        "Return No": refund_id, "Receipt No": order_id, "Store": pick(world.stores.store_id, o.store[order]),
        "Return Date": timestamps(done, "%Y-%m-%d %H:%M"), "SKU": sku, "Qty": quantity, "Refund Amount": amount,
        "Reason": pick(["changed mind", "damaged", "wrong item", "not suitable", "price adjustment"], reason),
    })
