"""The demo brand's people: who they are, and how channels mis-type them.

A ``People`` value holds the truth about every person (name, phone, email, city, birthday…) as numpy
indices and Arrow strings; the noise functions render one channel's view of a set of those people:
phone formats, email case and padding, homophone typos in names, missing fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberops.demo.clock import EPOCH_DAY, DemoWindow
from memberops.demo.text import blank_where, choose, concat, digits, pick, scramble

SURNAMES = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4), ("陈", "chen", 4.5),
    ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.1), ("吴", "wu", 2.0), ("周", "zhou", 1.9),
    ("徐", "xu", 1.5), ("孙", "sun", 1.5), ("马", "ma", 1.4), ("朱", "zhu", 1.3), ("胡", "hu", 1.3),
    ("郭", "guo", 1.1), ("何", "he", 1.1), ("林", "lin", 1.0), ("高", "gao", 1.0), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.8), ("谢", "xie", 0.7), ("宋", "song", 0.7), ("唐", "tang", 0.6),
    ("许", "xu", 0.6), ("韩", "han", 0.6), ("冯", "feng", 0.6), ("邓", "deng", 0.6), ("曹", "cao", 0.5),
    ("彭", "peng", 0.5), ("曾", "zeng", 0.5), ("肖", "xiao", 0.5), ("田", "tian", 0.4), ("董", "dong", 0.4),
    ("潘", "pan", 0.4), ("袁", "yuan", 0.4), ("蔡", "cai", 0.3), ("蒋", "jiang", 0.3), ("余", "yu", 0.3),
    ("杜", "du", 0.3), ("叶", "ye", 0.3), ("程", "cheng", 0.3), ("魏", "wei", 0.3), ("苏", "su", 0.3),
    ("丁", "ding", 0.3), ("沈", "shen", 0.3), ("欧阳", "ouyang", 0.05),
)
FEMALE_CHARS = (
    ("婷", "ting"), ("丽", "li"), ("静", "jing"), ("敏", "min"), ("芳", "fang"), ("娜", "na"), ("燕", "yan"),
    ("玲", "ling"), ("萍", "ping"), ("红", "hong"), ("霞", "xia"), ("洁", "jie"), ("琳", "lin"), ("雪", "xue"),
    ("慧", "hui"), ("颖", "ying"), ("佳", "jia"), ("欣", "xin"), ("悦", "yue"), ("梦", "meng"), ("晓", "xiao"),
    ("思", "si"), ("文", "wen"), ("婉", "wan"), ("倩", "qian"), ("璐", "lu"), ("露", "lu"), ("媛", "yuan"),
    ("蕾", "lei"), ("琪", "qi"), ("瑶", "yao"), ("楠", "nan"), ("秀", "xiu"), ("春", "chun"), ("美", "mei"),
    ("娟", "juan"), ("雨", "yu"),
)
MALE_CHARS = (
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("杰", "jie"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("刚", "gang"), ("平", "ping"), ("辉", "hui"), ("鹏", "peng"),
    ("浩", "hao"), ("宇", "yu"), ("俊", "jun"), ("斌", "bin"), ("峰", "feng"), ("建", "jian"), ("志", "zhi"),
    ("海", "hai"), ("晨", "chen"), ("博", "bo"),
)
# Same sound, different character: the typo a sales clerk or a customer makes most often.
HOMOPHONES = {
    "婷": ("庭", "ting"), "丽": ("莉", "li"), "静": ("晶", "jing"), "敏": ("民", "min"), "芳": ("方", "fang"),
    "娜": ("纳", "na"), "燕": ("艳", "yan"), "玲": ("铃", "ling"), "萍": ("苹", "ping"), "红": ("虹", "hong"),
    "霞": ("侠", "xia"), "洁": ("杰", "jie"), "琳": ("林", "lin"), "雪": ("学", "xue"), "慧": ("惠", "hui"),
    "颖": ("莹", "ying"), "佳": ("嘉", "jia"), "欣": ("鑫", "xin"), "悦": ("月", "yue"), "伟": ("玮", "wei"),
    "磊": ("垒", "lei"), "军": ("君", "jun"), "洋": ("阳", "yang"), "勇": ("永", "yong"), "涛": ("韬", "tao"),
    "明": ("铭", "ming"), "超": ("潮", "chao"), "辉": ("晖", "hui"), "鹏": ("朋", "peng"), "浩": ("皓", "hao"),
    "俊": ("骏", "jun"), "斌": ("彬", "bin"), "峰": ("锋", "feng"), "晨": ("辰", "chen"),
}
CITIES = (  # province, city, weight, landline area code
    ("上海", "上海市", 8.0, "021"), ("北京", "北京市", 7.0, "010"), ("广东", "广州市", 6.0, "020"),
    ("广东", "深圳市", 6.0, "0755"), ("浙江", "杭州市", 5.0, "0571"), ("江苏", "南京市", 4.0, "025"),
    ("江苏", "苏州市", 4.0, "0512"), ("四川", "成都市", 5.0, "028"), ("湖北", "武汉市", 4.0, "027"),
    ("重庆", "重庆市", 4.0, "023"), ("天津", "天津市", 3.0, "022"), ("陕西", "西安市", 3.0, "029"),
    ("湖南", "长沙市", 3.0, "0731"), ("河南", "郑州市", 3.0, "0371"), ("山东", "青岛市", 2.5, "0532"),
    ("山东", "济南市", 2.0, "0531"), ("福建", "厦门市", 2.0, "0592"), ("福建", "福州市", 2.0, "0591"),
    ("浙江", "宁波市", 2.5, "0574"), ("江苏", "无锡市", 2.0, "0510"), ("安徽", "合肥市", 2.5, "0551"),
    ("辽宁", "沈阳市", 2.0, "024"), ("辽宁", "大连市", 1.5, "0411"), ("云南", "昆明市", 1.5, "0871"),
    ("广西", "南宁市", 1.5, "0771"), ("江西", "南昌市", 1.5, "0791"), ("河北", "石家庄市", 1.5, "0311"),
    ("山西", "太原市", 1.0, "0351"), ("黑龙江", "哈尔滨市", 1.2, "0451"), ("吉林", "长春市", 1.0, "0431"),
    ("贵州", "贵阳市", 1.0, "0851"), ("广东", "佛山市", 2.0, "0757"), ("广东", "东莞市", 2.0, "0769"),
    ("浙江", "温州市", 1.5, "0577"),
)
MOBILE_PREFIXES = (130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156, 157, 158, 159,
                   166, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187, 188, 189, 198, 199)
EMAIL_DOMAINS = (("qq.com", 0.38), ("163.com", 0.2), ("126.com", 0.1), ("gmail.com", 0.07), ("outlook.com", 0.07),
                 ("sina.com", 0.05), ("foxmail.com", 0.05), ("icloud.com", 0.08))

# One table of given-name characters: female, male, then the homophones used only as typos.
_GIVEN = FEMALE_CHARS + MALE_CHARS
GIVEN_CHARS = tuple(c for c, _ in _GIVEN) + tuple(h for h, _ in HOMOPHONES.values())
GIVEN_PINYIN = tuple(p for _, p in _GIVEN) + tuple(p for _, p in HOMOPHONES.values())
TYPO_OF = np.array([GIVEN_CHARS.index(HOMOPHONES[c][0]) if c in HOMOPHONES else i for i, c in enumerate(GIVEN_CHARS)])


@dataclass(frozen=True)
class People:
    """The truth about every person; index ``i`` is person ``i``."""

    person_id: pa.Array
    is_female: np.ndarray
    surname: np.ndarray
    given: np.ndarray  # (n, 2) indices into GIVEN_CHARS; -1 for a one-character given name
    birthday: np.ndarray  # days since 1970-01-01
    baby_birthday: np.ndarray
    city: np.ndarray
    phone: np.ndarray  # 11-digit mainland mobile numbers, unique
    email: pa.Array  # lower case, null when the person has none
    consent_propensity: np.ndarray
    household_partner: np.ndarray  # the person whose phone this one gives out at times, or -1

    def __len__(self) -> int:
        return len(self.is_female)


def make_people(rng: np.random.Generator, n: int, window: DemoWindow) -> People:
    """``n`` people, their ages and their babies' as of the window's last day."""
    index = np.arange(n)
    is_female = rng.random(n) < 0.86
    weights = np.array([w for _, _, w in SURNAMES])
    surname = rng.choice(len(SURNAMES), n, p=weights / weights.sum())
    given = np.where(is_female[:, None], rng.integers(0, len(FEMALE_CHARS), (n, 2)),
                     len(FEMALE_CHARS) + rng.integers(0, len(MALE_CHARS), (n, 2)))
    given[:, 1] = np.where(rng.random(n) < 0.3, -1, given[:, 1])
    end_day = (window.end - EPOCH_DAY).days
    age_days = (rng.normal(31, 4.5, n).clip(20, 48) * 365.25).astype(np.int64)
    birthday = end_day - age_days
    baby_birthday = end_day - rng.integers(-120, 4 * 365, n)
    city_weights = np.array([c[2] for c in CITIES])
    city = rng.choice(len(CITIES), n, p=city_weights / city_weights.sum())
    phone = np.array(MOBILE_PREFIXES)[rng.integers(0, len(MOBILE_PREFIXES), n)] * 10**8 + scramble(index, 8, salt=1)
    partner = np.where(rng.random(n) < 0.04, rng.integers(0, n, n), -1)
    partner = np.where(partner == index, -1, partner)
    return People(
        person_id=concat("P", digits(index + 1, 8)),
        is_female=is_female, surname=surname, given=given, birthday=birthday, baby_birthday=baby_birthday,
        city=city, phone=phone, email=_emails(rng, index, surname, given, birthday),
        consent_propensity=rng.random(n), household_partner=partner,
    )


def _emails(rng: np.random.Generator, index: np.ndarray, surname: np.ndarray, given: np.ndarray,
            birthday: np.ndarray) -> pa.Array:
    n = len(index)
    domains = rng.choice(len(EMAIL_DOMAINS), n, p=[w for _, w in EMAIL_DOMAINS])
    domain = pick([d for d, _ in EMAIL_DOMAINS], domains)
    qq_number = digits(scramble(index, 9, salt=2) + 10**8)
    name = concat(pick([p for _, p, _ in SURNAMES], surname), given_pinyin(given))
    year = (birthday / 365.25 + 1970).astype(np.int64)
    suffix = choose(rng.integers(0, 4, n), digits(year), digits(year % 100, 2), digits(scramble(index, 3, salt=3), 3), "")
    separator = choose(rng.integers(0, 3, n), "", ".", "_")
    separator = pc.if_else(pc.equal(suffix, ""), "", separator)
    local = pc.if_else(pa.array(domains == 0), qq_number, concat(name, separator, suffix))
    email = concat(local, "@", domain)
    # Two people may not share an address by accident: later duplicates get a unique number.
    codes = pc.dictionary_encode(email).indices.to_numpy()
    first = np.zeros(n, dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    email = pc.if_else(pa.array(first), email, concat(local, "-", digits(index), "@", domain))
    return blank_where(email, rng.random(n) >= 0.45)


def given_pinyin(given: np.ndarray) -> pa.Array:
    second = pick(GIVEN_PINYIN, np.maximum(given[:, 1], 0))
    return concat(pick(GIVEN_PINYIN, given[:, 0]), blank_where(second, given[:, 1] < 0).fill_null(""))


def given_name(given: np.ndarray) -> pa.Array:
    second = pick(GIVEN_CHARS, np.maximum(given[:, 1], 0))
    return concat(pick(GIVEN_CHARS, given[:, 0]), blank_where(second, given[:, 1] < 0).fill_null(""))


def names(rng: np.random.Generator, people: People, who: np.ndarray, typo_rate: float) -> tuple[pa.Array, pa.Array]:
    """(surname, given name) as a channel holds them: a share mistyped with a homophone."""
    given = people.given[who].copy()
    typo = rng.random(len(who)) < typo_rate
    slot = np.where(given[:, 1] >= 0, rng.integers(0, 2, len(who)), 0)
    chosen = given[np.arange(len(who)), slot]
    given[np.arange(len(who)), slot] = np.where(typo, TYPO_OF[chosen], chosen)
    return pick([s for s, _, _ in SURNAMES], people.surname[who]), given_name(given)


def phone_text(rng: np.random.Generator, phones: np.ndarray, format_weights: tuple[float, ...]) -> pa.Array:
    """Mobile numbers the way people and systems write them.

    Formats, weighted: ``13800138000``, ``138-0013-8000``, ``+86 138 0013 8000``, ``+8613800138000``,
    ``138 0013 8000``.
    """
    text = digits(phones, 11)
    head = pc.utf8_slice_codeunits(text, 0, 3)
    mid = pc.utf8_slice_codeunits(text, 3, 7)
    tail = pc.utf8_slice_codeunits(text, 7, 11)
    weights = np.array(format_weights, dtype=np.float64)
    style = rng.choice(len(weights), len(phones), p=weights / weights.sum())
    return choose(style, text, concat(head, "-", mid, "-", tail), concat("+86 ", head, " ", mid, " ", tail),
                  concat("+86", text), concat(head, " ", mid, " ", tail))


def mistype_phones(rng: np.random.Generator, phones: np.ndarray, rate: float) -> np.ndarray:
    """A share of numbers with one of the last eight digits wrong."""
    wrong = rng.random(len(phones)) < rate
    position = 10 ** rng.integers(0, 8, len(phones))
    digit = (phones // position) % 10
    changed = phones + ((digit + rng.integers(1, 10, len(phones))) % 10 - digit) * position
    return np.where(wrong, changed, phones)


def email_text(rng: np.random.Generator, emails: pa.Array) -> pa.Array:
    """Addresses with the case and stray spaces people type them with."""
    style = rng.choice(4, len(emails), p=[0.72, 0.14, 0.09, 0.05])
    return choose(style, emails, pc.utf8_capitalize(emails), concat(" ", emails, " "), pc.utf8_upper(emails))


def household_phones(rng: np.random.Generator, people: People, who: np.ndarray, share: float) -> np.ndarray:
    """Phones as given on a channel: some people give their partner's number."""
    partner = people.household_partner[who]
    borrow = (partner >= 0) & (rng.random(len(who)) < share)
    return np.where(borrow, people.phone[np.maximum(partner, 0)], people.phone[who])


def present(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """A mask of which records hold a field, ``rate`` of them on average."""
    return rng.random(n) < rate
