"""The customers: one row per person, consistent across POS, CRM and after-sales.

Everything is drawn with numpy from one seeded generator; Faker supplies pools of names and user
names, sampled rather than called per person (per-person Faker runs at ~2,600 rows/s, pools at
~65,000). String columns end up as pyarrow arrays so that daily exports can `take` from them.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from faker import Faker
from faker.providers.person.zh_CN import Provider as ChineseNames

from sample_data import world
from transforms.gb2260 import county_codes
from transforms.identifiers import gb11643_check_chars, luhn_check_digits

ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
UPPER = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))
DIGITS = np.array(list("0123456789"))
GERMAN = np.array(list("CFGHJKLMNPRTVWXYZ0123456789"))


def choice(rng: np.random.Generator, weighted, size: int) -> np.ndarray:
    """Indices drawn from a sequence of (value, weight) pairs or from a sequence of weights."""
    weights = np.array([w[1] if isinstance(w, tuple) else w for w in weighted], float)
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


def join_chars(chars: np.ndarray) -> np.ndarray:
    """(n, m) array of single characters -> n strings of length m."""
    return np.ascontiguousarray(chars.astype("U1")).view(f"U{chars.shape[1]}").ravel()


def digits_to_strings(digits: np.ndarray) -> np.ndarray:
    """(n, m) array of digit values -> n strings of m digits (via bytes: far faster than astype(str))."""
    m = digits.shape[1]
    return np.ascontiguousarray(digits.astype(np.uint8) + 48).view(f"S{m}").ravel().astype(f"U{m}")


def digit_strings(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return digits_to_strings(rng.integers(0, 10, (n, width)))


def digits_of(strings: np.ndarray, width: int) -> np.ndarray:
    """n digit strings of equal width -> (n, width) integer array."""
    return np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).reshape(-1, width) - 48


def from_template(rng: np.random.Generator, template: str, n: int) -> np.ndarray:
    """Strings shaped like a template: '#' digit, 'L' letter, 'C' German passport character."""
    pools = {"#": DIGITS, "L": UPPER, "C": GERMAN}
    cols = [pools[c][rng.integers(0, len(pools[c]), n)] if c in pools else np.full(n, c) for c in template]
    return join_chars(np.stack(cols, axis=1))


@dataclass
class People:
    """Column arrays, one entry per person. Members come first (index < n_members)."""

    n_members: int
    origin: np.ndarray  # index into world.ORIGINS
    female: np.ndarray
    birth: np.ndarray  # datetime64[D]
    doc_type: pa.Array
    doc_no: pa.Array
    doc_no_as_written: pa.Array  # a resident ID ending in X is written with x by some systems
    name: pa.Array
    mobile_shapes: tuple[pa.Array, pa.Array, pa.Array]  # 138..., +86 138 ..., 86-138-...; null = none
    cards: dict[str, pa.Array]  # payment method -> the person's card number
    email: pa.Array
    member_no: pa.Array
    residence: np.ndarray  # index into world.RESIDENCES, -1 = none on file
    address: pa.Array
    postal_code: pa.Array
    joined: np.ndarray  # datetime64[D]
    tier: np.ndarray
    points: np.ndarray
    spend_cents: np.ndarray
    consent: np.ndarray
    openid: pa.Array
    last_purchase: np.ndarray  # datetime64[D]; moved forward as the days are generated

    @property
    def size(self) -> int:
        return len(self.origin)

    @property
    def nationality(self) -> np.ndarray:
        return np.array([o.nationality for o in world.ORIGINS])[self.origin]


def make_people(rng: np.random.Generator, faker_seed: int, n_members: int, n_travellers: int,
                start: dt.date) -> People:
    n = n_members + n_travellers
    today = np.datetime64(start, "D")
    # Members are mostly mainland residents; travellers come from everywhere.
    origin = np.concatenate([_origins(rng, n_members, mainland_boost=3.0), _origins(rng, n_travellers, 1.0)])
    female = rng.random(n) < 0.58
    age_days = (np.clip(rng.normal(38, 12, n), 18, 80) * 365.25).astype(np.int64) + rng.integers(0, 365, n)
    birth = today - age_days
    doc_type, doc_no = _documents(rng, origin, female, birth)
    lower_x = np.strings.endswith(doc_no, "X") & (rng.random(n) < 0.25)
    residence = np.where(rng.random(n) < np.where(origin == 0, 0.97, 0.6),
                         choice(rng, world.RESIDENCE_WEIGHTS, n), -1)
    joined = np.datetime64("2015-01-01") + rng.integers(0, (today - np.datetime64("2015-01-01")).astype(int) + 30, n)
    tier = choice(rng, world.TIERS, n)
    spend = (rng.lognormal(8.5, 1.0, n) * (1 + 2.5 * tier) * 100).astype(np.int64)
    openid = "o" + join_chars(ALNUM[rng.integers(0, 64, (n, 27))])
    return People(
        n_members=n_members,
        origin=origin,
        female=female,
        birth=birth,
        doc_type=pa.array(doc_type),
        doc_no=pa.array(doc_no),
        doc_no_as_written=pa.array(np.where(lower_x, np.strings.replace(doc_no, "X", "x"), doc_no)),
        name=pa.array(_names(rng, faker_seed, origin, female)),
        mobile_shapes=_mobiles(rng, origin),
        cards=_cards(rng, n),
        email=pa.array(_emails(rng, faker_seed, n)),
        member_no=pa.array("M" + (rng.choice(900_000_000, n, replace=False) + 100_000_000).astype(str)),
        residence=residence,
        address=pa.array(_addresses(rng, residence)),
        postal_code=pa.array(_postal_codes(rng, residence)),
        joined=joined,
        tier=tier,
        points=(spend // 100 * rng.uniform(0.05, 0.4, n)).astype(np.int64),
        spend_cents=spend,
        consent=rng.random(n) < 0.7,
        openid=pa.array(np.where(rng.random(n) < 0.7, openid, None)),
        last_purchase=joined + ((today - joined).astype(np.int64) * rng.random(n)).astype(np.int64),
    )


def _origins(rng: np.random.Generator, n: int, mainland_boost: float) -> np.ndarray:
    return choice(rng, [o.weight * (mainland_boost if i == 0 else 1) for i, o in enumerate(world.ORIGINS)], n)


def _documents(rng, origin, female, birth) -> tuple[np.ndarray, np.ndarray]:
    n = len(origin)
    doc_type = np.empty(n, dtype=object)
    doc_no = np.empty(n, dtype="U18")
    for i, o in enumerate(world.ORIGINS):
        idx = np.flatnonzero(origin == i)
        kinds = np.array([k for k, _ in o.documents])[choice(rng, o.documents, len(idx))]
        doc_type[idx] = kinds
        for kind in sorted(set(kinds)):  # sorted: set order varies between processes
            sel = idx[kinds == kind]
            doc_no[sel] = _document_numbers(rng, kind, o, female[sel], birth[sel])
    # A number must identify one person: redraw the rare collisions of the short shapes as
    # PRC passports, whose nine characters leave room for millions of people.
    _, first = np.unique(doc_no, return_index=True)
    dup = np.setdiff1d(np.arange(n), first)
    doc_no[dup] = "G9" + digit_strings(rng, len(dup), 7)
    doc_type[dup] = "护照"
    return doc_type.astype(str), doc_no


def _document_numbers(rng, kind: str, origin: world.Origin, female, birth) -> np.ndarray:
    n = len(female)
    if kind == "身份证":
        provinces = list(world.ID_PROVINCES)
        prov = np.array(provinces)[choice(rng, list(world.ID_PROVINCES.values()), n)]
        area = np.empty(n, dtype="U6")
        for p in sorted(set(prov)):
            codes = np.array(county_codes(p))
            area[prov == p] = codes[rng.integers(0, len(codes), (prov == p).sum())]
        ymd = np.strings.replace(np.datetime_as_string(birth, unit="D"), "-", "")
        order = rng.integers(0, 500, n) * 2 + np.where(female, 0, 1)  # odd = male (GB 11643)
        body = area + ymd + np.strings.zfill(order.astype(str), 3)
        return body + gb11643_check_chars(digits_of(body, 17))
    if kind == "港澳通行证":
        prefix = "H" if origin.nationality == "HKG" else "M"
        return prefix + np.where(rng.random(n) < 0.2, digit_strings(rng, n, 10), digit_strings(rng, n, 8))
    if kind == "台胞证":
        return digit_strings(rng, n, 8)
    if origin.nationality == "CHN":
        return np.where(rng.random(n) < 0.8, "E", "G") + digit_strings(rng, n, 8)
    return from_template(rng, origin.passport_shape, n)


def _names(rng, faker_seed: int, origin, female) -> np.ndarray:
    n = len(origin)
    fake = Faker(["zh_CN", "ja_JP", "en_US", "en_GB", "fr_FR", "de_DE"])
    fake.seed_instance(faker_seed)
    out = np.empty(n, dtype=object)
    styles = np.array([o.names for o in world.ORIGINS])[origin]

    idx = np.flatnonzero(styles == "zh")
    surnames = np.array(list(ChineseNames.last_names))
    given_m, given_f = np.array(ChineseNames.first_names_male), np.array(ChineseNames.first_names_female)
    out[idx] = surnames[choice(rng, list(ChineseNames.last_names.values()), len(idx))] + np.where(
        female[idx], given_f[rng.integers(0, len(given_f), len(idx))], given_m[rng.integers(0, len(given_m), len(idx))])

    # Foreign names as printed on the passport: SURNAME GIVEN, upper case, no accents.
    ja = fake["ja_JP"]
    pools = {
        "ja": [f"{ja.last_romanized_name()} {ja.first_romanized_name()}" for _ in range(400)],
        "ko": [f"{s} {g}" for s in world.KOREAN_SURNAMES for g in world.KOREAN_GIVEN],
        "latin": [f"{fake[loc].last_name()} {fake[loc].first_name()}"
                  for loc in ("en_US", "en_GB", "fr_FR", "de_DE") for _ in range(300)],
    }
    for style, pool in pools.items():
        idx = np.flatnonzero(styles == style)
        pool = np.array([_ascii(name).upper() for name in pool])
        out[idx] = pool[rng.integers(0, len(pool), len(idx))]
    return out.astype(str)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _mobiles(rng, origin) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A person's mobile in the three shapes the spec lists: 138..., +86 138 ..., 86-138-...."""
    n = len(origin)
    prefixes = np.array(world.MOBILE_PREFIXES)[rng.integers(0, len(world.MOBILE_PREFIXES), n)]
    number = prefixes + digit_strings(rng, n, 8)
    has = rng.random(n) < np.where(origin == 0, 0.98, np.where(origin <= 3, 0.8, 0.4))
    head, mid, tail = (np.strings.slice(number, a, b) for a, b in ((0, 3), (3, 7), (7, 11)))
    shapes = (number, "+86 " + head + " " + mid + " " + tail, "86-" + head + "-" + mid + "-" + tail)
    return tuple(pa.array(np.where(has, shape, None)) for shape in shapes)


def _cards(rng, n: int) -> dict[str, pa.Array]:
    """One card per person and scheme: UnionPay 16 or 19 digits, VISA and Mastercard 16."""
    cards = {}
    for method, prefixes in world.CARD_PREFIXES.items():
        long = (rng.random(n) < 0.5) if method == "银联" else np.zeros(n, bool)
        body = np.array(prefixes)[rng.integers(0, len(prefixes), n)] + digit_strings(rng, n, 12)
        digits = digits_of(body, 18)
        out = np.empty(n, dtype="U19")
        for sel, length in ((~long, 16), (long, 19)):
            head = digits[sel, : length - 1]
            out[sel] = digits_to_strings(np.column_stack([head, luhn_check_digits(head)]))
        cards[method] = pa.array(out)
    return cards


def _emails(rng, faker_seed: int, n: int) -> np.ndarray:
    fake = Faker("zh_CN")
    fake.seed_instance(faker_seed + 1)
    handles = np.array(sorted({fake.user_name() for _ in range(3000)}))
    domains = np.array([d for d, _ in world.EMAIL_DOMAINS])[choice(rng, world.EMAIL_DOMAINS, n)]
    suffix = np.where(rng.random(n) < 0.5, rng.integers(10, 99, n).astype(str), "")
    email = handles[rng.integers(0, len(handles), n)] + suffix + "@" + domains
    return np.where(rng.random(n) < 0.85, email, None)


def _addresses(rng, residence) -> np.ndarray:
    """Street addresses as the CRM stores them: district, road, number, then 弄/楼/室."""
    out = np.full(len(residence), None, dtype=object)
    for i, (_, _, district, _, _, roads) in enumerate(world.RESIDENCES):
        idx = np.flatnonzero(residence == i)
        m = len(idx)
        road = np.array(roads)[rng.integers(0, len(roads), m)]
        number = rng.integers(1, 1800, m).astype(str)
        floor = rng.integers(1, 30, m)
        room = (floor * 100 + rng.integers(1, 8, m)).astype(str)
        tower = number + "号" + floor.astype(str) + "楼" + room
        lane = number + "弄" + rng.integers(1, 40, m).astype(str) + "号" + room  # Shanghai lanes
        out[idx] = district + road + np.where(rng.random(m) < 0.4, lane, tower) + "室"
    return out


def _postal_codes(rng, residence) -> np.ndarray:
    district = np.array([r[4] for r in world.RESIDENCES])[np.maximum(residence, 0)]
    code = np.strings.slice(district, 0, 5) + rng.integers(0, 10, len(residence)).astype(str)
    return np.where(residence >= 0, code, None)
