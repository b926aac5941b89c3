"""The customers: one row per person, consistent across POS, CRM and after-sales.

Everything is drawn with numpy, from one seeded generator per part of PART people (so parts can be
drawn in parallel and still give the same people); Faker supplies pools of names and user names,
sampled rather than called per person (per-person Faker runs at ~2,600 rows/s, pools at
~65,000). String columns end up as pyarrow arrays so that daily exports can `take` from them.
"""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata
from dataclasses import dataclass, fields

import numpy as np
import pandas  # noqa: F401  pa.array(ndarray) imports it on first use: here, once, not in every forked worker
import pyarrow as pa
import pyarrow.compute as pc
from faker import Faker
from faker.providers.person.zh_CN import Provider as ChineseNames

from sample_data import world
from transforms.gb2260 import county_codes
from transforms.identifiers import gb11643_check_chars, luhn_check_digits

ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)
POOLS = {"#": b"0123456789", "L": b"ABCDEFGHJKLMNPRSTUVWXYZ", "C": b"CFGHJKLMNPRTVWXYZ0123456789"}  # C: German passports


def choice(rng: np.random.Generator, weighted, size: int) -> np.ndarray:
    """Indices drawn from a sequence of (value, weight) pairs or from a sequence of weights."""
    weights = np.array([w[1] if isinstance(w, tuple) else w for w in weighted], float)
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


def strings(chars: np.ndarray, lengths: np.ndarray | None = None) -> pa.Array:
    """(n, m) array of ASCII codes -> n Arrow strings, row i cut to lengths[i] (default: m). Built
    from the bytes: no per-string work, which is what makes millions of people cheap."""
    n, m = chars.shape
    lengths = np.full(n, m) if lengths is None else lengths
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(chars, np.uint8)[np.arange(m) < lengths[:, None]]
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def digits_of(strings: np.ndarray | list[str], width: int) -> np.ndarray:
    """n digit strings of equal width -> (n, width) integer array."""
    return np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).reshape(-1, width).astype(np.int64) - 48


def decimal_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers -> (n, width) array of their zero-padded decimal digits."""
    return values[:, None] // 10 ** np.arange(width - 1, -1, -1) % 10


def digit_strings(rng: np.random.Generator, n: int, width: int, prefix: str = "") -> pa.Array:
    return shaped(rng, prefix + "#" * width, n)


def shaped(rng: np.random.Generator, template: str, n: int) -> pa.Array:
    """Strings shaped like a template: '#' digit, 'L' letter, 'C' German passport character; any
    other character stands for itself."""
    pools = {c: np.frombuffer(pool, np.uint8) for c, pool in POOLS.items()}
    cols = [pools[c][rng.integers(0, len(pools[c]), n)] if c in pools else np.full(n, ord(c)) for c in template]
    return strings(np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.uint8))


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


PART = 50_000  # people drawn per unit of work


def make_people(seed: int, n_members: int, n_travellers: int, start: dt.date, map=map) -> People:
    """Members first, then travellers, drawn in parts of PART people that each have their own
    seed: the result is the same whichever `map` (a process pool's, to use every core) draws them."""
    _name_pools(seed), _email_handles(seed)  # built once, before a pool forks
    parts, index = [], 0
    for count, boost in ((n_members, 3.0), (n_travellers, 1.0)):  # members: mostly mainland residents
        for lo in range(0, count, PART):
            parts.append((seed, index, min(PART, count - lo), boost, start))
            index += 1
    people = _concat(list(map(_draw, parts)), n_members)
    rng = np.random.default_rng([seed, 0])
    _make_documents_unique(rng, people)
    people.member_no = pc.binary_join_element_wise(
        "M", text(rng.choice(900_000_000, people.size, replace=False) + 100_000_000), ""
    )
    return people


def _draw(part: tuple) -> People:
    seed, index, n, mainland_boost, start = part
    rng = np.random.default_rng([seed, 1, index])
    today = np.datetime64(start, "D")
    origin = _origins(rng, n, mainland_boost)
    female = rng.random(n) < 0.58
    age_days = (np.clip(rng.normal(38, 12, n), 18, 80) * 365.25).astype(np.int64) + rng.integers(0, 365, n)
    birth = today - age_days
    doc_type, doc_no = _documents(rng, origin, female, birth)
    lower_x = pc.and_(pc.ends_with(doc_no, "X"), pa.array(rng.random(n) < 0.25))
    residence = np.where(rng.random(n) < np.where(origin == 0, 0.97, 0.6), choice(rng, world.RESIDENCE_WEIGHTS, n), -1)
    joined = np.datetime64("2015-01-01") + rng.integers(0, (today - np.datetime64("2015-01-01")).astype(int) + 30, n)
    tier = choice(rng, world.TIERS, n)
    spend = (rng.lognormal(8.5, 1.0, n) * (1 + 2.5 * tier) * 100).astype(np.int64)
    openid = np.column_stack([np.full(n, ord("o")), ALNUM[rng.integers(0, 64, (n, 27))]])
    return People(
        n_members=0,
        origin=origin,
        female=female,
        birth=birth,
        doc_type=doc_type,
        doc_no=doc_no,
        doc_no_as_written=pc.if_else(lower_x, pc.replace_substring(doc_no, "X", "x"), doc_no),
        name=_names(rng, seed, origin, female),
        mobile_shapes=_mobiles(rng, origin),
        cards=_cards(rng, n),
        email=_emails(rng, seed, n),
        member_no=pa.nulls(n, pa.string()),  # numbered over everyone, once the parts are joined
        residence=residence,
        address=_addresses(rng, residence),
        postal_code=_postal_codes(rng, residence),
        joined=joined,
        tier=tier,
        points=(spend // 100 * rng.uniform(0.05, 0.4, n)).astype(np.int64),
        spend_cents=spend,
        consent=rng.random(n) < 0.7,
        openid=present(rng.random(n) < 0.7, strings(openid)),
        last_purchase=joined + ((today - joined).astype(np.int64) * rng.random(n)).astype(np.int64),
    )


def _concat(parts: list[People], n_members: int) -> People:
    def join(values):
        first = values[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(values)
        if isinstance(first, tuple):
            return tuple(join(list(v)) for v in zip(*values))
        if isinstance(first, dict):
            return {key: join([v[key] for v in values]) for key in first}
        return pa.concat_arrays(values)

    columns = {f.name: join([getattr(p, f.name) for p in parts]) for f in fields(People) if f.name != "n_members"}
    return People(n_members=n_members, **columns)


def _make_documents_unique(rng: np.random.Generator, people: People) -> None:
    """A number must identify one person: redraw the rare collisions of the short shapes as
    PRC passports, whose nine characters leave room for millions of people."""
    codes = people.doc_no.dictionary_encode().indices.to_numpy()
    shared = np.flatnonzero(np.bincount(codes)[codes] > 1)  # the few numbers held by more than one person
    again = np.zeros(len(codes), bool)
    again[shared] = True
    again[shared[np.unique(codes[shared], return_index=True)[1]]] = False  # the first holder keeps it
    if not again.any():
        return
    mask, new = pa.array(again), digit_strings(rng, int(again.sum()), 7, prefix="G9")
    people.doc_no = pc.replace_with_mask(people.doc_no, mask, new)
    people.doc_no_as_written = pc.replace_with_mask(people.doc_no_as_written, mask, new)
    people.doc_type = pc.replace_with_mask(people.doc_type, mask, pa.array(["护照"] * len(new)))


def text(values: np.ndarray) -> pa.Array:
    """Integers as decimal text, in Arrow (numpy's astype(str) is far slower)."""
    return pc.cast(pa.array(values), pa.string())


def present(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """values where mask is true, null elsewhere."""
    return pc.if_else(pa.array(mask), values, pa.scalar(None, values.type))


def _origins(rng: np.random.Generator, n: int, mainland_boost: float) -> np.ndarray:
    return choice(rng, [o.weight * (mainland_boost if i == 0 else 1) for i, o in enumerate(world.ORIGINS)], n)


def _documents(rng, origin, female, birth) -> tuple[pa.Array, pa.Array]:
    n = len(origin)
    doc_type = np.empty(n, dtype=object)
    where, numbers = [np.zeros(0, np.int64)], [pa.array([], pa.string())]
    for i, o in enumerate(world.ORIGINS):
        idx = np.flatnonzero(origin == i)
        kinds = np.array([k for k, _ in o.documents])[choice(rng, o.documents, len(idx))]
        doc_type[idx] = kinds
        for kind in sorted(set(kinds)):  # sorted: set order varies between processes
            sel = idx[kinds == kind]
            where.append(sel)
            numbers.append(_document_numbers(rng, kind, o, female[sel], birth[sel]))
    doc_no = pa.concat_arrays(numbers).take(np.argsort(np.concatenate(where)))
    return pa.array(doc_type.astype(str)), doc_no


def _document_numbers(rng, kind: str, origin: world.Origin, female, birth) -> pa.Array:
    n = len(female)
    if kind == "身份证":
        provinces = list(world.ID_PROVINCES)
        prov = choice(rng, list(world.ID_PROVINCES.values()), n)
        area = np.empty((n, 6), np.int64)
        for p in np.unique(prov):
            codes = _area_codes(provinces[p])
            area[prov == p] = codes[rng.integers(0, len(codes), (prov == p).sum())]
        year, month = birth.astype("datetime64[Y]").astype(int) + 1970, birth.astype("datetime64[M]").astype(int) % 12 + 1
        day = (birth - birth.astype("datetime64[M]")).astype(int) + 1
        order = rng.integers(0, 500, n) * 2 + np.where(female, 0, 1)  # odd = male (GB 11643)
        body = np.column_stack([area, decimal_digits(year * 10000 + month * 100 + day, 8), decimal_digits(order, 3)])
        check = np.frombuffer(gb11643_check_chars(body).astype("S1"), np.uint8)
        return strings(np.column_stack([body + 48, check]))
    if kind == "港澳通行证":
        prefix = "H" if origin.nationality == "HKG" else "M"
        return pc.if_else(pa.array(rng.random(n) < 0.2), digit_strings(rng, n, 10, prefix), digit_strings(rng, n, 8, prefix))
    if kind == "台胞证":
        return digit_strings(rng, n, 8)
    if origin.nationality == "CHN":
        return pc.if_else(pa.array(rng.random(n) < 0.8), digit_strings(rng, n, 8, "E"), digit_strings(rng, n, 8, "G"))
    return shaped(rng, origin.passport_shape, n)


@functools.cache
def _area_codes(province: str) -> np.ndarray:
    return digits_of(county_codes(province), 6)


def _names(rng, faker_seed: int, origin, female) -> pa.Array:
    n = len(origin)
    surnames = pa.array(list(ChineseNames.last_names)).take(choice(rng, list(ChineseNames.last_names.values()), n))
    given_m, given_f = pa.array(ChineseNames.first_names_male), pa.array(ChineseNames.first_names_female)
    given = pc.if_else(
        pa.array(female), given_f.take(rng.integers(0, len(given_f), n)), given_m.take(rng.integers(0, len(given_m), n))
    )
    pools = _name_pools(faker_seed)
    candidates = [pc.binary_join_element_wise(surnames, given, "")]
    candidates += [pool.take(rng.integers(0, len(pool), n)) for pool in pools.values()]
    style = np.array([["zh", *pools].index(o.names) for o in world.ORIGINS], np.int8)[origin]
    return pc.choose(pa.array(style), *candidates)


@functools.cache
def _name_pools(faker_seed: int) -> dict[str, pa.Array]:
    """Foreign names as printed on the passport: SURNAME GIVEN, upper case, no accents."""
    fake = Faker(["ja_JP", "en_US", "en_GB", "fr_FR", "de_DE"])
    fake.seed_instance(faker_seed)
    ja = fake["ja_JP"]
    pools = {
        "ja": [f"{ja.last_romanized_name()} {ja.first_romanized_name()}" for _ in range(400)],
        "ko": [f"{s} {g}" for s in world.KOREAN_SURNAMES for g in world.KOREAN_GIVEN],
        "latin": [
            f"{fake[loc].last_name()} {fake[loc].first_name()}"
            for loc in ("en_US", "en_GB", "fr_FR", "de_DE")
            for _ in range(300)
        ],
    }
    return {style: pa.array([_ascii(name).upper() for name in pool]) for style, pool in pools.items()}


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _mobiles(rng, origin) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A person's mobile in the three shapes the spec lists: 138..., +86 138 ..., 86-138-...."""
    n = len(origin)
    prefix = digits_of(world.MOBILE_PREFIXES, 3)[rng.integers(0, len(world.MOBILE_PREFIXES), n)]
    number = np.column_stack([prefix, rng.integers(0, 10, (n, 8))]) + 48
    has = rng.random(n) < np.where(origin == 0, 0.98, np.where(origin <= 3, 0.8, 0.4))
    head, mid, tail = (strings(number[:, a:b]) for a, b in ((0, 3), (3, 7), (7, 11)))
    shapes = (
        strings(number),
        pc.binary_join_element_wise("+86", head, mid, tail, " "),
        pc.binary_join_element_wise("86", head, mid, tail, "-"),
    )
    return tuple(present(has, shape) for shape in shapes)


def _cards(rng, n: int) -> dict[str, pa.Array]:
    """One card per person and scheme: UnionPay 16 or 19 digits, VISA and Mastercard 16."""
    cards = {}
    for method, prefixes in world.CARD_PREFIXES.items():
        length = np.where(rng.random(n) < 0.5, 19, 16) if method == "银联" else np.full(n, 16)
        digits = np.zeros((n, 19), np.int64)
        digits[:, :6] = digits_of(prefixes, 6)[rng.integers(0, len(prefixes), n)]
        digits[:, 6:18] = rng.integers(0, 10, (n, 12))
        check = np.where(length == 19, luhn_check_digits(digits[:, :18]), luhn_check_digits(digits[:, :15]))
        digits[np.arange(n), length - 1] = check
        cards[method] = strings(digits + 48, length)
    return cards


def _emails(rng, faker_seed: int, n: int) -> pa.Array:
    handles = _email_handles(faker_seed)
    domains = pa.array([d for d, _ in world.EMAIL_DOMAINS]).take(choice(rng, world.EMAIL_DOMAINS, n))
    suffix = pc.if_else(pa.array(rng.random(n) < 0.5), text(rng.integers(10, 99, n)), "")
    email = pc.binary_join_element_wise(handles.take(rng.integers(0, len(handles), n)), suffix, "@", domains, "")
    return present(rng.random(n) < 0.85, email)


@functools.cache
def _email_handles(faker_seed: int) -> pa.Array:
    fake = Faker("zh_CN")
    fake.seed_instance(faker_seed + 1)
    return pa.array(sorted({fake.user_name() for _ in range(3000)}))


def _addresses(rng, residence) -> pa.Array:
    """Street addresses as the CRM stores them: district, road, number, then 弄/楼/室."""
    n, at = len(residence), np.maximum(residence, 0)
    roads = [r[5] for r in world.RESIDENCES]
    count = np.array([len(r) for r in roads])
    first = np.cumsum(count) - count
    road = pa.array([road for r in roads for road in r]).take(first[at] + (rng.random(n) * count[at]).astype(np.int64))
    district = pa.array([r[2] for r in world.RESIDENCES]).take(at)
    number, floor = text(rng.integers(1, 1800, n)), rng.integers(1, 30, n)
    room = text(floor * 100 + rng.integers(1, 8, n))
    tower = pc.binary_join_element_wise(number, "号", text(floor), "楼", room, "")
    lane = pc.binary_join_element_wise(number, "弄", text(rng.integers(1, 40, n)), "号", room, "")  # Shanghai lanes
    address = pc.binary_join_element_wise(district, road, pc.if_else(pa.array(rng.random(n) < 0.4), lane, tower), "室", "")
    return present(residence >= 0, address)


def _postal_codes(rng, residence) -> pa.Array:
    district = pa.array([r[4][:5] for r in world.RESIDENCES]).take(np.maximum(residence, 0))
    return present(residence >= 0, pc.binary_join_element_wise(district, text(rng.integers(0, 10, len(residence))), ""))
