"""Generate the three systems' exports exactly as ../shared/spec/exports.md describes them.

    tuomin generate --out DIR --days N --rows N --seed S

writes, for each day, `pos/<date>/pos_lines_<yyyymmdd>.csv` (UTF-8 with BOM), the CRM snapshot
`membership/<date>/members_<yyyymmdd>.csv` (GB18030, Chinese header), the day's after-sales
cases `after_sales/<date>/cases_<yyyymmdd>.csv` (UTF-8), and `requests/erasure.csv`. The same
seed always gives the same bytes. One person keeps one document, mobile and member number in
all three systems; only the way they are written varies, as it does in real exports.
"""

from __future__ import annotations

import codecs
import datetime as dt
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker import Faker

from sample_data import world
from sample_data.notes import NoteWriter, Subject
from sample_data.people import People, choice, digit_strings, make_people
from transforms.identifiers import ean13_check_digit

BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class Config:
    start: dt.date = dt.date(2026, 3, 1)
    days: int = 3
    rows: int = 1500  # POS lines per day
    members: int | None = None  # CRM size; default grows with the daily volume
    seed: int = 20260301
    split_last_day: bool = True  # deliver the last day's POS lines as two files (…_part2.csv)

    @property
    def n_members(self) -> int:
        return self.members if self.members is not None else max(300, self.rows * 4 // 3)

    @property
    def n_travellers(self) -> int:
        return max(300, self.rows * self.days // 4)


def generate(out: Path, config: Config = Config()) -> dict[str, int]:
    """Write the landing tree under `out`; returns {relative path: data rows} for every file."""
    rng = np.random.default_rng(config.seed)
    people = make_people(rng, config.seed, config.n_members, config.n_travellers, config.start)
    staff = _staff(rng, config.seed)
    # A few members buy far more often than most, but no one buys hundreds of lines a day.
    activity = np.minimum(rng.pareto(1.5, people.n_members) + 0.05, 8.0)
    notes = NoteWriter(random.Random(config.seed))
    recent: list[pa.Table] = []  # receipts that after-sales cases may refer to
    written: dict[str, int] = {}
    for day in range(config.days):
        date = config.start + dt.timedelta(days=day)
        ymd = f"{date:%Y%m%d}"
        lines, receipts = pos_lines(rng, people, staff, activity, date, config.rows)
        parts = [lines]
        if config.split_last_day and day == config.days - 1 and lines.num_rows > 1:
            half = lines.num_rows // 2
            parts = [lines.slice(0, half), lines.slice(half)]
        for i, part in enumerate(parts):
            suffix = "" if i == 0 else f"_part{i + 1}"
            written |= _write(out, f"pos/{date}/pos_lines_{ymd}{suffix}.csv", part, "utf-8-sig")
        _record_purchases(people, receipts, date)
        recent = (recent + [receipts.take(rng.permutation(receipts.num_rows)[: max(20, config.rows // 20)])])[-30:]
        written |= _write(out, f"membership/{date}/members_{ymd}.csv", membership(rng, people, date), "gb18030")
        cases = after_sales(rng, notes, people, staff, pa.concat_tables(recent), date, config.rows)
        written |= _write(out, f"after_sales/{date}/cases_{ymd}.csv", cases, "utf-8")
    written |= _write(out, "requests/erasure.csv", erasure_requests(rng, people, pa.concat_tables(recent), config.start), "utf-8")
    return written


# -- staff ---------------------------------------------------------------------------------------
@dataclass
class Staff:
    store: np.ndarray  # index into world.STORES; -1 = after-sales desk
    employee_no: np.ndarray
    name: np.ndarray


def _staff(rng, seed: int) -> Staff:
    fake = Faker("zh_CN")
    fake.seed_instance(seed + 2)
    per_store = 12
    n = per_store * (len(world.STORES) + 1)
    names = np.array([fake.name() for _ in range(n)])
    employee_no = "E" + (rng.choice(90000, n, replace=False) + 10000).astype(str)
    store = np.repeat(np.arange(-1, len(world.STORES)), per_store)
    return Staff(store, employee_no, names)


# -- POS -----------------------------------------------------------------------------------------
POS_COLUMNS = ("txn_id", "line_no", "store_code", "terminal_id", "cashier_id", "cashier_name", "txn_time",
               "member_no", "buyer_name", "doc_type", "doc_no", "nationality", "mobile", "flight_no",
               "departure_date", "destination", "sku", "product_name", "category", "brand", "qty",
               "unit_price", "discount", "amount", "payment_method", "card_no")


def pos_lines(rng, people: People, staff: Staff, activity: np.ndarray, date: dt.date, rows: int) -> tuple[pa.Table, pa.Table]:
    """One day of receipt lines, and one row per receipt for the after-sales generator."""
    sizes = np.minimum(rng.geometric(0.55, size=rows), 6)
    n = int(np.searchsorted(np.cumsum(sizes), rows) + 1)
    sizes = sizes[:n]
    sizes[-1] -= sizes.sum() - rows

    store = choice(rng, [s.weight for s in world.STORES], n)
    is_member = rng.random(n) < 0.45
    buyer = np.where(is_member, rng.choice(people.n_members, n, p=activity / activity.sum()),
                     rng.integers(people.n_members, people.size, n))
    is_member &= people.joined[buyer] <= np.datetime64(date)
    opens, closes = (np.array([s.hours[i] for s in world.STORES]) * 3600 for i in (0, 1))
    seconds = rng.integers(opens[store], np.minimum(closes[store], 24) * 3600 - 1)
    txn_time = np.datetime64(date) + seconds.astype("timedelta64[s]")

    # Receipt numbers run per store through the day.
    order = np.lexsort((seconds, store))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.searchsorted(store[order], store[order])
    seq = rank + rng.integers(1000, 5000, len(world.STORES))[store]
    prefix = pa.array([s.receipt_prefix + f"-{date:%Y%m%d}" for s in world.STORES]).take(store)
    txn_id = pc.binary_join_element_wise(prefix, _zfill(seq, 7), "-")

    flight, departure, destination = _departures(rng, store, seconds, date)
    pay_mainland = np.array([m for m, _ in world.PAYMENTS_MAINLAND])[choice(rng, world.PAYMENTS_MAINLAND, n)]
    pay_visitor = np.array([m for m, _ in world.PAYMENTS_VISITOR])[choice(rng, world.PAYMENTS_VISITOR, n)]
    payment = np.where(people.origin[buyer] == 0, pay_mainland, pay_visitor)
    refund = rng.random(n) < 0.01

    store_code = pa.array([s.code for s in world.STORES]).take(store)
    receipt = {
        "txn_id": txn_id,
        "store_code": store_code,
        "terminal_id": pc.binary_join_element_wise(store_code, _zfill(rng.integers(1, 9, n), 2), "-"),
        "cashier": _cashier(rng, staff, store),
        "txn_time": pc.strftime(pa.array(txn_time), "%Y-%m-%d %H:%M:%S"),
        "member_no": pc.if_else(pa.array(is_member & (rng.random(n) < 0.9)), people.member_no.take(buyer), None),
        "buyer": buyer,
        "mobile": _mobile_as_typed(rng, people, buyer, blank=np.where(is_member, 0.05, 0.3)),
        "flight_no": flight,
        "departure_date": departure,
        "destination": destination,
        "payment_method": payment,
        "card_no": _card_as_printed(rng, people, buyer, payment),
    }

    r = np.repeat(np.arange(n), sizes)
    line_no = np.arange(rows) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    product = _products(rng, rows)
    qty = np.array([1, 2, 3])[choice(rng, (80, 15, 5), rows)] * np.where(refund[r], -1, 1)
    price = np.array([p[3] for p in world.PRODUCTS])[product] * 100
    pct = np.array([0, 0, 0, 5, 10, 15])[rng.integers(0, 6, rows)]
    discount = np.round(qty * price * pct / 100).astype(np.int64)
    amount = qty * price - discount
    catalogue = {name: pa.array(values).take(product) for name, values in (
        ("sku", _skus()), ("product_name", [p[1] for p in world.PRODUCTS]), ("category", [p[2] for p in world.PRODUCTS]),
        ("brand", [p[0] for p in world.PRODUCTS]))}
    at_line = pa.array(r)
    take = lambda arr: (arr if isinstance(arr, pa.Array) else pa.array(arr)).take(at_line)  # noqa: E731
    lines = pa.table({
        "txn_id": take(txn_id),
        "line_no": _text(line_no),
        "store_code": take(receipt["store_code"]),
        "terminal_id": take(receipt["terminal_id"]),
        "cashier_id": take(receipt["cashier"][0]),
        "cashier_name": take(receipt["cashier"][1]),
        "txn_time": take(receipt["txn_time"]),
        "member_no": take(receipt["member_no"]),
        "buyer_name": people.name.take(buyer[r]),
        "doc_type": people.doc_type.take(buyer[r]),
        "doc_no": people.doc_no_as_written.take(buyer[r]),
        "nationality": pa.array([o.nationality for o in world.ORIGINS]).take(people.origin[buyer[r]]),
        "mobile": take(receipt["mobile"]),
        "flight_no": take(flight),
        "departure_date": take(departure),
        "destination": take(destination),
        **catalogue,
        "qty": _text(qty),
        "unit_price": money(price),
        "discount": money(discount),
        "amount": money(amount),
        "payment_method": take(payment),
        "card_no": take(receipt["card_no"]),
    })
    total = np.bincount(r, weights=amount, minlength=n).astype(np.int64)
    first_product = np.array([p[1] for p in world.PRODUCTS])[product[np.cumsum(sizes) - sizes]]
    receipts = pa.table({
        "txn_id": txn_id, "buyer": buyer, "member": is_member, "store": store, "seconds": seconds,
        "date": np.full(n, np.datetime64(date)), "flight_no": flight, "product": first_product,
        "amount_cents": total, "payment_method": payment, "card_no": receipt["card_no"],
    })
    return lines, receipts


def money(cents: np.ndarray) -> pa.Array:
    """Integer cents -> decimal(12,2) text: 98000 -> '980.00', -9800 -> '-98.00'."""
    units, frac = np.divmod(np.abs(cents), 100)
    signed = pc.binary_join_element_wise(pc.if_else(pa.array(cents < 0), "-", ""), _text(units), "")
    return pc.binary_join_element_wise(signed, _zfill(frac, 2), ".")


def _text(values: np.ndarray) -> pa.Array:
    """Integers as decimal text, in Arrow (numpy's astype(str) is far slower)."""
    return pc.cast(pa.array(values), pa.string())


def _zfill(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_text(values), width, "0")


def _departures(rng, store, seconds, date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flight or sailing each receipt is for; airport buyers fly that day, downtown later."""
    n = len(store)
    ports = np.array([d[1] for d in world.DEPARTURES])
    port_of_store = np.array([s.port for s in world.STORES])[store]
    pick = np.empty(n, np.int64)
    for port in sorted(set(port_of_store)):  # sorted: set order varies between processes
        sel = port_of_store == port
        candidates = np.flatnonzero(ports == port) if port else np.flatnonzero(ports != "WSK")
        pick[sel] = candidates[rng.integers(0, len(candidates), sel.sum())]
    downtown = port_of_store == ""
    late = (seconds > 22 * 3600) & (rng.random(n) < 0.5)
    offset = np.where(downtown, rng.integers(1, 61, n), late.astype(int))
    departure = np.datetime64(date) + offset
    codes = np.array([d[0] for d in world.DEPARTURES])[pick]
    mmdd = np.strings.slice(np.strings.replace(np.datetime_as_string(departure), "-", ""), 4, 8)
    flight = np.where(ports[pick] == "WSK", codes + mmdd, codes)  # sailings: ship code + date
    return flight, np.datetime_as_string(departure), np.array([d[2] for d in world.DEPARTURES])[pick]


def _cashier(rng, staff: Staff, store) -> tuple[np.ndarray, np.ndarray]:
    first = np.searchsorted(staff.store, store)
    count = np.searchsorted(staff.store, store, side="right") - first
    idx = first + rng.integers(0, count)
    return staff.employee_no[idx], staff.name[idx]


def _mobile_as_typed(rng, people: People, who, blank) -> pa.Array:
    shape = choice(rng, (70, 15, 15), len(who))
    mobile = pc.choose(pa.array(shape), *(s.take(pa.array(who)) for s in people.mobile_shapes))
    return pc.if_else(pa.array(rng.random(len(who)) < blank), None, mobile)


def _card_as_printed(rng, people: People, who, payment) -> pa.Array:
    out = pa.nulls(len(who), pa.string())
    for method, cards in people.cards.items():
        sel = payment == method
        full = cards.take(pa.array(who))
        length = pc.utf8_length(full)
        masked = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(full, 0, 6),
            pc.if_else(pc.equal(length, 19), "*********", "******"),
            pc.utf8_slice_codeunits(full, -4), "")
        printed = pc.if_else(pa.array(rng.random(len(who)) < 0.6), full, masked)
        out = pc.if_else(pa.array(sel), printed, out)
    return out


def _products(rng, n: int) -> np.ndarray:
    categories = list(world.CATEGORY_WEIGHTS)
    by_category = [np.array([i for i, p in enumerate(world.PRODUCTS) if p[2] == c]) for c in categories]
    cat = choice(rng, list(world.CATEGORY_WEIGHTS.values()), n)
    out = np.empty(n, np.int64)
    for c, members in enumerate(by_category):
        sel = cat == c
        out[sel] = members[rng.integers(0, len(members), sel.sum())]
    return out


def _skus() -> np.ndarray:
    """EAN-13 codes (GS1 check digit) for the catalogue, stable across runs."""
    bodies = [f"69{i * 7919 % 10**10:010d}" for i in range(1, len(world.PRODUCTS) + 1)]
    return np.array([f"{b}{ean13_check_digit(b)}" for b in bodies])


def _record_purchases(people: People, receipts: pa.Table, date: dt.date) -> None:
    member = receipts["member"].to_numpy()
    buyer = receipts["buyer"].to_numpy()[member]
    people.last_purchase[buyer] = np.datetime64(date)
    np.add.at(people.points, buyer, receipts["amount_cents"].to_numpy()[member] // 100)
    np.maximum(people.points, 0, out=people.points)
    np.add.at(people.spend_cents, buyer, receipts["amount_cents"].to_numpy()[member])


# -- CRM -----------------------------------------------------------------------------------------
MEMBERSHIP_HEADER = ("会员编号", "姓名", "性别", "出生日期", "证件类型", "证件号码", "手机号码", "电子邮箱", "国籍",
                     "省份", "城市", "详细地址", "邮政编码", "入会日期", "会员等级", "积分余额", "累计消费金额",
                     "营销授权", "微信OpenID", "最近消费日期")


def membership(rng, people: People, date: dt.date) -> pa.Table:
    """The full CRM on that day: every member who had joined by then."""
    idx = np.flatnonzero(people.joined[: people.n_members] <= np.datetime64(date))
    at = pa.array(idx)
    n = len(idx)
    birth = people.birth[idx]
    iso = np.datetime_as_string(birth)
    y, m, d = (birth.astype("datetime64[Y]").astype(int) + 1970,
               birth.astype("datetime64[M]").astype(int) % 12 + 1,
               (birth - birth.astype("datetime64[M]")).astype(int) + 1)
    slashed = y.astype(str) + "/" + m.astype(str) + "/" + d.astype(str)  # 1988/7/14, as some clerks type it
    residence = people.residence[idx]
    has_home = residence >= 0
    province = np.array([r[0] for r in world.RESIDENCES])[np.maximum(residence, 0)]
    city = np.array([r[1] for r in world.RESIDENCES])[np.maximum(residence, 0)]
    sex = np.where(people.female[idx], "女", "男")
    columns = [
        people.member_no.take(at),
        people.name.take(at),
        pa.array(np.where(rng.random(n) < 0.03, None, sex)),
        pa.array(np.where(rng.random(n) < 0.45, slashed, iso)),
        people.doc_type.take(at),
        people.doc_no_as_written.take(at),
        _mobile_as_typed(rng, people, idx, blank=0.02) if n else pa.array([], pa.string()),
        people.email.take(at),
        pa.array(people.nationality[idx]),
        pa.array(np.where(has_home, province, None)),
        pa.array(np.where(has_home, city, None)),
        people.address.take(at),
        people.postal_code.take(at),
        pa.array(np.datetime_as_string(people.joined[idx])),
        pa.array(np.array([t for t, _ in world.TIERS])[people.tier[idx]]),
        pa.array(people.points[idx].astype(str)),
        money(people.spend_cents[idx]),
        pa.array(np.where(people.consent[idx], "是", "否")),
        people.openid.take(at),
        pa.array(np.datetime_as_string(np.minimum(people.last_purchase[idx], np.datetime64(date)))),
    ]
    return pa.table(columns, names=list(MEMBERSHIP_HEADER))


# -- after-sales ---------------------------------------------------------------------------------
CASE_COLUMNS = ("case_no", "member_no", "txn_id", "created_at", "channel", "case_type", "description",
                "handler_name", "resolution", "refund_amount", "closed_at", "satisfaction")


def after_sales(rng, notes: NoteWriter, people: People, staff: Staff, recent: pa.Table, date: dt.date, rows: int) -> pa.Table:
    n = int(rng.poisson(max(1.0, rows / 60)))
    day_start = dt.datetime.combine(date, dt.time())
    handlers = staff.name[staff.store == -1]
    rec = recent.to_pydict()
    # Every per-case random draw is made up front, vectorized; the loop only assembles text.
    kind = rng.random(n)
    pick = rng.integers(0, max(1, len(rec["txn_id"])), n)
    members, travellers = rng.integers(0, people.n_members, n), rng.integers(people.n_members, people.size, n)
    products = rng.integers(0, len(world.PRODUCTS), n)
    case_types = np.array([t for t, _ in world.CASE_TYPES])[choice(rng, world.CASE_TYPES, n)]
    channels = np.array([c for c, _ in world.CHANNELS])[choice(rng, world.CHANNELS, n)]
    created_s = rng.integers(9 * 3600, 21 * 3600, n)
    minutes_to_close = rng.integers(10, 600, n)
    closes, rated = rng.random(n) < 0.8, rng.random(n) < 0.7
    scores = rng.choice([1, 2, 3, 4, 5], n, p=[.05, .07, .18, .35, .35])
    handler = handlers[rng.integers(0, len(handlers), n)]
    out = {c: [] for c in CASE_COLUMNS}
    for i in range(n):
        case_type = str(case_types[i])
        created = day_start + dt.timedelta(seconds=int(created_s[i]))
        if kind[i] < 0.85 and rec["txn_id"]:  # about a purchase
            j = int(pick[i])
            who, txn = int(rec["buyer"][j]), rec["txn_id"][j]
            bought = dt.datetime.combine(rec["date"][j], dt.time()) + dt.timedelta(seconds=int(rec["seconds"][j]))
            created = max(created, bought + dt.timedelta(minutes=10))
            member_no = people.member_no[who].as_py() if rec["member"][j] else None
            flight, product, amount, card = rec["flight_no"][j], rec["product"][j], rec["amount_cents"][j], rec["card_no"][j]
            store = world.STORES[rec["store"][j]].name
        else:  # a member asking about points, or a walk-in without a receipt
            who = int(members[i]) if kind[i] < 0.95 else int(travellers[i])
            txn, member_no = None, (people.member_no[who].as_py() if who < people.n_members else None)
            _, product, _, price = world.PRODUCTS[int(products[i])]
            flight, amount, card, store, case_type = world.DEPARTURES[0][0], price * 100, None, world.STORES[4].name, "咨询"
        card = people.cards["银联"][who].as_py() if card and "*" in card else card
        subject = Subject(
            name=people.name[who].as_py(), female=bool(people.female[who]), mobile=people.mobile_shapes[0][who].as_py(),
            doc_type=people.doc_type[who].as_py(), doc_no=people.doc_no[who].as_py(), email=people.email[who].as_py(),
            address=people.address[who].as_py(), card=card, flight=flight, product=product,
            amount=f"{abs(amount) // 100}.{abs(amount) % 100:02d}", store=store)
        closed = created + dt.timedelta(minutes=int(minutes_to_close[i]))
        is_closed = bool(closes[i]) and closed.date() == date
        out["case_no"].append(f"AS-{date:%Y%m%d}-{i + 1:05d}")
        out["member_no"].append(member_no)
        out["txn_id"].append(txn)
        out["created_at"].append(f"{created:%Y-%m-%d %H:%M:%S}")
        out["channel"].append(str(channels[i]))
        out["case_type"].append(case_type)
        out["description"].append(notes.description(subject, case_type).text)
        out["handler_name"].append(str(handler[i]))
        out["resolution"].append(notes.resolution(subject, case_type).text if is_closed else None)
        out["refund_amount"].append(subject.amount if case_type == "退货" and is_closed else "0.00")
        out["closed_at"].append(f"{closed:%Y-%m-%d %H:%M:%S}" if is_closed else None)
        out["satisfaction"].append(str(scores[i]) if is_closed and rated[i] else None)
    return pa.table({c: pa.array(v, pa.string()) for c, v in out.items()})


# -- erasure requests ----------------------------------------------------------------------------
def erasure_requests(rng, people: People, recent: pa.Table, start: dt.date) -> pa.Table:
    """Four requests: by document, by mobile (+86 form), by member number, and one unknown person."""
    buyers = np.unique(recent["buyer"].to_numpy())
    members = buyers[buyers < people.n_members]
    with_mobile = buyers[pc.is_valid(people.mobile_shapes[1].take(pa.array(buyers))).to_numpy(zero_copy_only=False)]
    by_doc, by_mobile, by_member = (int(rng.choice(pool)) for pool in (buyers, with_mobile, members))
    unknown = "E" + digit_strings(rng, 1, 8)[0]
    requested = [f"{start - dt.timedelta(days=d)} 10:{d:02d}:00" for d in (9, 7, 5, 3)]
    return pa.table({
        "requested_at": requested,
        "doc_no": [people.doc_no[by_doc].as_py(), None, None, unknown],
        "mobile": [None, people.mobile_shapes[1][by_mobile].as_py(), None, None],
        "member_no": [None, None, people.member_no[by_member].as_py(), None],
    })


# -- writing -------------------------------------------------------------------------------------
def _write(root: Path, relative: str, table: pa.Table, encoding: str) -> dict[str, int]:
    """CSV per RFC 4180 with quotes only where needed (DuckDB's writer), in the system's encoding."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "utf8.csv"
        con = duckdb.connect()
        con.register("export", table)
        con.execute(f"COPY export TO '{plain}' (HEADER, DELIMITER ',')")
        con.close()
        with plain.open("rb") as src, path.open("wb") as dst:
            if encoding == "utf-8-sig":
                dst.write(BOM)
            if encoding == "gb18030":
                _transcode(src, dst, "gb18030")
            else:
                shutil.copyfileobj(src, dst, 1 << 24)
    return {relative: table.num_rows}


def _transcode(src, dst, encoding: str, chunk: int = 1 << 24) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    while block := src.read(chunk):
        dst.write(decoder.decode(block).encode(encoding))
    dst.write(decoder.decode(b"", final=True).encode(encoding))
