"""Customer files in each channel's own layout: its headers, date formats, yes/no words and its noise.

Each function returns an Arrow table whose columns are exactly what the channel exports; the preset
``ingest/presets/<channel>/customers.yaml`` maps them onto canonical fields (a test keeps the two in
step). Noise per channel: which fields are filled, how phones are written, typos, shared phones.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberops.demo.people import (
    CITIES,
    email_text,
    household_phones,
    mistype_phones,
    names,
    phone_text,
    present,
)
from memberops.demo.records import ASSOCIATES_PER_STORE, Records
from memberops.demo.text import blank_where, concat, dates, digits, pick, scramble, timestamps
from memberops.demo.world import World


def _mask(flags: pa.Array) -> np.ndarray:
    return flags.to_numpy(zero_copy_only=False).astype(bool)


def _consent(rng: np.random.Generator, world: World, person: np.ndarray, rate: float) -> np.ndarray:
    """Opt-ins follow a person's general willingness, with some per-channel whim."""
    willingness = 0.7 * world.people.consent_propensity[person] + 0.3 * rng.random(len(person))
    return willingness < rate


def _yes_no(flag: np.ndarray, yes: str, no: str) -> pa.Array:
    return pick([no, yes], flag.astype(np.int64))


def _gender(rng: np.random.Generator, world: World, person: np.ndarray, rate: float, female: str, male: str,
            unknown: str | None = None) -> pa.Array:
    text = pick([male, female], world.people.is_female[person].astype(np.int64))
    missing = ~present(rng, len(person), rate)
    return pc.if_else(pa.array(missing), pa.scalar(unknown, pa.string()), text)


def _birthday(rng: np.random.Generator, world: World, person: np.ndarray, rate: float, fmt: str) -> pa.Array:
    days = world.people.birthday[person]
    # A few are a day off: typed from memory, or the lunar/solar calendar confusion.
    days = days + np.where(rng.random(len(person)) < 0.01, rng.choice([-1, 1], len(person)), 0)
    return blank_where(dates(days, fmt), ~present(rng, len(person), rate))


def _phones(rng: np.random.Generator, world: World, person: np.ndarray, rate: float, formats: tuple[float, ...],
            *, typo: float = 0.0, household: float = 0.0) -> pa.Array:
    numbers = household_phones(rng, world.people, person, household) if household else world.people.phone[person]
    numbers = mistype_phones(rng, numbers, typo) if typo else numbers
    return blank_where(phone_text(rng, numbers, formats), ~present(rng, len(person), rate))


def _full_name(rng: np.random.Generator, world: World, person: np.ndarray, rate: float, typo: float) -> pa.Array:
    surname, given = names(rng, world.people, person, typo)
    return blank_where(concat(surname, given), ~present(rng, len(person), rate))


def _province_city(world: World, person: np.ndarray) -> tuple[pa.Array, pa.Array]:
    city = world.people.city[person]
    return pick([c[0] for c in CITIES], city), pick([c[1] for c in CITIES], city)


def _joined(records: Records, fmt: str) -> pa.Array:
    return blank_where(timestamps(np.maximum(records.joined, 0), fmt), records.joined < 0)


def _referrer_code(world: World, records: Records) -> pa.Array:
    return blank_where(world.member_card.take(pa.array(np.maximum(records.referrer, 0))), records.referrer < 0)


def _sources(rng: np.random.Generator, n: int, options: tuple[tuple[str, float], ...]) -> pa.Array:
    weights = np.array([w for _, w in options])
    return pick([s for s, _ in options], rng.choice(len(options), n, p=weights / weights.sum()))


def tmall_members(rng: np.random.Generator, world: World) -> pa.Table:
    """The flagship store's buyer and member export (客户运营平台): buyers who never joined have no phone."""
    rec = world.records["tmall"]
    person, n = rec.person, len(rec)
    member = rec.joined >= 0
    province, city = _province_city(world, person)
    level = pick(["普通会员", "银卡会员", "金卡会员", "钻石会员"], rng.choice(4, n, p=[0.6, 0.25, 0.12, 0.03]))
    return pa.table({
        "买家会员名": rec.source_id,
        "会员等级": blank_where(level, ~member),
        "姓名": blank_where(_full_name(rng, world, person, 0.55, 0.02), ~member),
        "性别": _gender(rng, world, person, 0.7, "女", "男"),
        "生日": blank_where(_birthday(rng, world, person, 0.35, "%Y-%m-%d"), ~member),
        "手机号": blank_where(_phones(rng, world, person, 0.85, (0.9, 0, 0, 0.1, 0)), ~member),
        "省份": province,
        "城市": city,
        "入会时间": _joined(rec, "%Y-%m-%d %H:%M:%S"),
        "入会渠道": blank_where(_sources(rng, n, (("店铺首页", 3), ("商品详情页", 3), ("直播间", 2), ("会员中心", 1), ("购后入会", 2))), ~member),
        "短信营销": blank_where(_yes_no(_consent(rng, world, person, 0.55), "是", "否"), ~member),
    })


def jd_members(rng: np.random.Generator, world: World) -> pa.Table:
    """JD's brand membership export (品牌会员): pins, sometimes a phone, dates with slashes."""
    rec = world.records["jd"]
    person, n = rec.person, len(rec)
    member = rec.joined >= 0
    province, city = _province_city(world, person)
    return pa.table({
        "用户账号": rec.source_id,
        "会员姓名": _full_name(rng, world, person, 0.5, 0.02),
        "手机号码": _phones(rng, world, person, 0.6, (1, 0, 0, 0, 0), household=0.5),
        "性别": _gender(rng, world, person, 0.6, "女", "男", "保密"),
        "出生日期": _birthday(rng, world, person, 0.25, "%Y/%m/%d"),
        "所在省份": province,
        "所在城市": city,
        "开卡时间": _joined(rec, "%Y/%m/%d %H:%M:%S"),
        "开卡渠道": blank_where(_sources(rng, n, (("店铺首页", 3), ("商品详情页", 2), ("京东APP会员频道", 2), ("购物车", 1))), ~member),
        "是否接收营销短信": _yes_no(_consent(rng, world, person, 0.5), "是", "否"),
    })


def wechat_members(rng: np.random.Generator, world: World) -> pa.Table:
    """The WeChat mini-programme's member export: openid, unionid, the brand card, 男/女/未知."""
    rec = world.records["wechat"]
    person, n = rec.person, len(rec)
    province, city = _province_city(world, person)
    surname, given = names(rng, world.people, person, 0.0)
    nickname = pc.choose(pa.array(rng.integers(0, 4, n).astype(np.int8)), concat(surname, "妈妈"),
                         concat("小", pc.utf8_slice_codeunits(given, 0, 1)), concat(given, "宝妈"), pa.scalar("芽芽家"))
    source = _sources(rng, n, (("公众号菜单", 3), ("门店二维码", 3), ("导购邀请", 2), ("朋友圈广告", 2), ("小程序搜索", 1)))
    source = pc.if_else(pa.array(rec.referrer >= 0), pa.scalar("好友推荐"), source)
    via_store = _mask(pc.is_in(source, pa.array(["门店二维码", "导购邀请"])))
    invited = _mask(pc.equal(source, "导购邀请"))
    store = pick(world.stores.store_id, world.home_store[person])
    associate = concat(store, "-", digits(world.associate[person] + 1, 2))
    card = world.member_card.take(pa.array(person))  # the mini-programme's card is the brand card
    return pa.table({
        "openid": rec.source_id,
        "unionid": world.wechat_unionid.take(pa.array(person)),
        "会员卡号": card,
        "昵称": nickname,
        "姓名": _full_name(rng, world, person, 0.5, 0.03),
        "手机号": _phones(rng, world, person, 0.75, (0.85, 0, 0, 0.15, 0)),
        "性别": _gender(rng, world, person, 0.85, "女", "男", "未知"),
        "生日": _birthday(rng, world, person, 0.45, "%Y-%m-%d"),
        "宝宝生日": blank_where(dates(world.people.baby_birthday[person], "%Y-%m-%d"), ~present(rng, n, 0.6)),
        "省份": province,
        "城市": city,
        "注册时间": _joined(rec, "%Y-%m-%d %H:%M:%S"),
        "注册来源": source,
        "所属门店": blank_where(store, ~via_store),
        "导购工号": blank_where(associate, ~invited),
        "推荐人会员码": _referrer_code(world, rec),
        "服务通知授权": _yes_no(_consent(rng, world, person, 0.7), "是", "否"),
        "短信营销授权": _yes_no(_consent(rng, world, person, 0.45), "是", "否"),
    })


def pos_customers(rng: np.random.Generator, world: World) -> pa.Table:
    """The store system's customer list: typed in at the till, so formats vary and mistakes happen."""
    rec = world.records["pos"]
    person, n = rec.person, len(rec)
    surname, given = names(rng, world.people, person, 0.06)
    swapped = rng.random(n) < 0.02  # first and last name entered the wrong way round
    no_name = ~present(rng, n, 0.95)
    store = np.where(rec.is_primary, world.home_store[person], rng.integers(0, len(world.stores), n))
    phones = _phones(rng, world, person, 0.97, (0.5, 0.25, 0.05, 0.05, 0.15), typo=0.015, household=0.6)
    # Customers who will not give a number get the store's; the associate still needs the sale recorded.
    store_phone = pick(world.stores.phone, store)
    phones = pc.if_else(pa.array(rng.random(n) < 0.015), store_phone, phones)
    # A customer's main record holds the brand card; a second registration got one of the stores'
    # earlier card numbers.
    legacy = concat("LSP", digits(scramble(np.arange(n), 8, salt=22), 8))
    card = pc.if_else(pa.array(rec.is_primary), world.member_card.take(pa.array(person)), legacy)
    emails = world.people.email.take(pa.array(person))
    return pa.table({
        "Customer ID": rec.source_id,
        "Card No": card,
        "Last Name": blank_where(pc.if_else(pa.array(swapped), given, surname), no_name),
        "First Name": blank_where(pc.if_else(pa.array(swapped), surname, given), no_name),
        "Mobile": phones,
        "Email": blank_where(email_text(rng, emails.fill_null("")), _mask(pc.is_null(emails)) | ~present(rng, n, 0.3)),
        "Gender": _gender(rng, world, person, 0.9, "F", "M"),
        "Birthday": _birthday(rng, world, person, 0.6, "%Y%m%d"),
        "City": pick([c[1] for c in CITIES], world.stores.city[store]),
        "Home Store": pick(world.stores.store_id, store),
        "Associate": concat(pick(world.stores.store_id, store), "-", digits(rng.integers(1, ASSOCIATES_PER_STORE + 1, n), 2)),
        "Registered": _joined(rec, "%Y-%m-%d %H:%M"),
        "Referred By": _referrer_code(world, rec),
        "SMS Opt-in": _yes_no(_consent(rng, world, person, 0.6), "Y", "N"),
        "Email Opt-in": _yes_no(_consent(rng, world, person, 0.3), "Y", "N"),
        "Call Opt-in": _yes_no(_consent(rng, world, person, 0.2), "Y", "N"),
    })


def app_users(rng: np.random.Generator, world: World) -> pa.Table:
    """The app backend's user table (Parquet, typed columns, times in UTC without a zone): phones mostly in
    +86 form, gender as WeChat's 0/1/2, unionids of users who log in with WeChat."""
    rec = world.records["app"]
    person, n = rec.person, len(rec)
    has_wechat = np.zeros(len(world.people), dtype=bool)
    has_wechat[world.records["wechat"].person] = True
    wechat_login = has_wechat[person] & (rng.random(n) < 0.45)
    emails = world.people.email.take(pa.array(person))
    gender = np.where(world.people.is_female[person], 2, 1)
    gender = np.where(present(rng, n, 0.6), gender, 0).astype(np.int8)
    birthday = np.where(present(rng, n, 0.3), world.people.birthday[person], -1)
    joined = rec.joined
    return pa.table({
        "user_id": rec.source_id,
        "mobile": _phones(rng, world, person, 0.9, (0.2, 0, 0.1, 0.7, 0)),
        "email": blank_where(email_text(rng, emails.fill_null("")), _mask(pc.is_null(emails)) | ~present(rng, n, 0.8)),
        "nickname": concat("sprout_", digits(scramble(np.arange(n), 6, salt=23), 6)),
        "real_name": _full_name(rng, world, person, 0.3, 0.01),
        "gender": pa.array(gender, pa.int8()),
        "birthday": pa.array(np.where(birthday >= 0, birthday, 0).astype("datetime64[D]"), pa.date32(),
                             mask=birthday < 0),
        "city": pick([c[1] for c in CITIES], world.people.city[person]),
        "wx_unionid": blank_where(world.wechat_unionid.take(pa.array(person)), ~wechat_login),
        "registered_at": pa.array(joined.astype("datetime64[s]"), pa.timestamp("s")),  # naive, in UTC
        "install_source": _sources(rng, n, (("app_store", 3), ("huawei", 2), ("xiaomi", 1), ("wechat_share", 2),
                                            ("qr_in_store", 1))),
        "push_opt_in": pa.array(_consent(rng, world, person, 0.6)),
        "sms_opt_in": pa.array(_consent(rng, world, person, 0.4)),
        "email_opt_in": pa.array(_consent(rng, world, person, 0.3)),
    })
