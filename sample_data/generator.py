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
import multiprocessing as mp
import os
import random
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from faker import Faker

from sample_data import world
from sample_data.notes import NoteWriter, Subject
from sample_data.people import People, choice, digit_strings, make_people, text
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
    snapshots: str = "daily"  # the CRM's full snapshot every day, or "last": only on the last day (a long history)
    part: int = 250_000  # POS lines per unit of work (after-sales cases: a tenth); each part has its own seed

    @property
    def n_members(self) -> int:
        return self.members if self.members is not None else max(300, self.rows * 4 // 3)

    @property
    def n_travellers(self) -> int:
        return max(300, self.rows * self.days // 4)


def generate(out: Path, config: Config = Config(), workers: int | None = None) -> dict[str, int]:
    """Write the landing tree under `out`; returns {relative path: data rows} for every file.

    The work is cut into parts of fixed size, each drawn from its own seed, and the parts run on
    `workers` processes (default: one per core): the bytes depend on the config, never on how
    many processes made them."""
    forked = Forked(workers or os.cpu_count() or 1)
    rng = np.random.default_rng(config.seed)
    people = make_people(config.seed, config.n_members, config.n_travellers, config.start, forked.map)
    staff = _staff(rng, config.seed)
    # A few members buy far more often than most, but no one buys hundreds of lines a day.
    activity = np.minimum(rng.pareto(1.5, people.n_members) + 0.05, 8.0)
    recent: list[pa.Table] = []  # receipts that after-sales cases may refer to
    written: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pieces-", dir=out) as tmp:
        for day in range(config.days):
            date = config.start + dt.timedelta(days=day)
            day_rng = np.random.default_rng([config.seed, 2, day])
            receipts = _receipts(day_rng, date, config.rows)
            keep = np.sort(day_rng.choice(receipts.n, min(receipts.n, max(20, config.rows // 20)), replace=False))
            SHARED.__dict__.update(people=people, staff=staff, activity=activity, date=date, receipts=receipts, keep=keep)
            split = config.rows // 2 if config.split_last_day and day == config.days - 1 and config.rows > 1 else config.rows
            names = [f"pos/{date}/pos_lines_{date:%Y%m%d}.csv", f"pos/{date}/pos_lines_{date:%Y%m%d}_part2.csv"]
            tasks = [(config.seed, day, i, lo, hi, split, Path(tmp)) for i, (lo, hi) in enumerate(receipts.parts(config.part))]
            bought, kept = [], []
            with ExitStack() as stack:
                files = [
                    stack.enter_context(Export(out / name, POS_COLUMNS, "utf-8-sig"))
                    for name in names[: 1 + (split < config.rows)]
                ]
                for pieces, member_purchases, for_cases in forked.imap(_pos_part, tasks):
                    for file, piece in pieces:
                        files[file].append(piece)
                    bought.append(member_purchases)
                    kept.append(for_cases)
            written |= dict(zip(names, [split, config.rows - split][: len(files)]))
            _record_purchases(people, pa.concat_tables(bought), date)
            recent = (recent + [pa.concat_tables(kept)])[-30:]

            SHARED.recent = pa.concat_tables(recent)
            members = np.arange(0, people.n_members, config.part)
            cases = int(day_rng.poisson(max(1.0, config.rows / 60)))
            names = [f"membership/{date}/members_{date:%Y%m%d}.csv", f"after_sales/{date}/cases_{date:%Y%m%d}.csv"]
            snapshot = config.snapshots == "daily" or day == config.days - 1
            tasks = [
                (_membership_part, config.seed, day, lo, min(lo + config.part, people.n_members), Path(tmp))
                for lo in (members if snapshot else [])
            ]
            tasks += [
                (_cases_part, config.seed, day, lo, min(lo + config.part // 10, cases), Path(tmp))
                for lo in range(0, cases, config.part // 10)
            ]
            with ExitStack() as stack:
                crm = stack.enter_context(Export(out / names[0], MEMBERSHIP_HEADER, "gb18030")) if snapshot else None
                notes = stack.enter_context(Export(out / names[1], CASE_COLUMNS, "utf-8"))
                for task, (piece, rows) in zip(tasks, forked.imap(_call, tasks)):
                    (crm if task[0] is _membership_part else notes).append(piece, rows)  # type: ignore[union-attr]
            written |= {names[1]: notes.rows} | ({names[0]: crm.rows} if crm else {})
        SHARED.__dict__.clear()
        erasure = erasure_requests(rng, people, pa.concat_tables(recent), config.start)
        with Export(out / "requests/erasure.csv", erasure.column_names, "utf-8") as requests:
            _csv(erasure, Path(tmp) / "requests.csv")
            requests.append(Path(tmp) / "requests.csv", erasure.num_rows)
    return written | {"requests/erasure.csv": requests.rows}


class Forked:
    """map over freshly forked processes: they see the parent's state as it is at the call
    (the people, SHARED) without pickling it; results come back in order."""

    def __init__(self, workers: int):
        self.workers = workers

    def imap(self, fn, items: list):
        """Each result as soon as it and those before it are done."""
        if self.workers <= 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        with mp.get_context("fork").Pool(min(self.workers, len(items))) as pool:
            yield from pool.imap(fn, items)

    def map(self, fn, items: list) -> list:
        return list(self.imap(fn, items))


SHARED = SimpleNamespace()  # the day's state that forked workers read; set by the parent before each map


def _call(task: tuple):
    fn, *args = task
    return fn(*args)


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
POS_COLUMNS = (
    "txn_id",
    "line_no",
    "store_code",
    "terminal_id",
    "cashier_id",
    "cashier_name",
    "txn_time",
    "member_no",
    "buyer_name",
    "doc_type",
    "doc_no",
    "nationality",
    "mobile",
    "flight_no",
    "departure_date",
    "destination",
    "sku",
    "product_name",
    "category",
    "brand",
    "qty",
    "unit_price",
    "discount",
    "amount",
    "payment_method",
    "card_no",
)


@dataclass
class Receipts:
    """The day's receipts as the tills number them (drawn for the whole day at once, so that
    receipt numbers run per store through the day however the lines are then made)."""

    sizes: np.ndarray  # lines per receipt
    store: np.ndarray
    seconds: np.ndarray  # time of day
    seq: np.ndarray  # the store's running receipt number

    @property
    def n(self) -> int:
        return len(self.sizes)

    def parts(self, lines: int) -> list[tuple[int, int]]:
        """Receipt ranges of about `lines` lines each."""
        first_line = np.cumsum(self.sizes) - self.sizes
        bounds = np.searchsorted(first_line, np.arange(0, first_line[-1] + 1, lines))
        return list(zip(bounds, list(bounds[1:]) + [self.n]))

    def slice(self, lo: int, hi: int) -> Receipts:
        return Receipts(self.sizes[lo:hi], self.store[lo:hi], self.seconds[lo:hi], self.seq[lo:hi])


def _receipts(rng, date: dt.date, rows: int) -> Receipts:
    sizes = np.minimum(rng.geometric(0.55, size=rows), 6)
    n = int(np.searchsorted(np.cumsum(sizes), rows) + 1)
    sizes = sizes[:n]
    sizes[-1] -= sizes.sum() - rows
    store = choice(rng, [s.weight for s in world.STORES], n)
    opens, closes = (np.array([s.hours[i] for s in world.STORES]) * 3600 for i in (0, 1))
    seconds = rng.integers(opens[store], np.minimum(closes[store], 24) * 3600 - 1)
    order = np.argsort(store * 86_400 + seconds, kind="stable")  # by store, then time
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.searchsorted(store[order], store[order])
    seq = rank + rng.integers(1000, 5000, len(world.STORES))[store]
    return Receipts(sizes, store, seconds, seq)


def _pos_part(task: tuple) -> tuple[list[tuple[int, Path]], pa.Table, pa.Table]:
    """One part of the day's receipts, in a worker: its CSV pieces (file index, path), what its
    members bought, and the receipts kept for after-sales."""
    seed, day, index, lo, hi, split, tmp = task
    part = SHARED.receipts.slice(lo, hi)
    lines, receipts = pos_lines(
        np.random.default_rng([seed, 3, day, index]), SHARED.people, SHARED.staff, SHARED.activity, SHARED.date, part
    )
    first_line = int(np.sum(SHARED.receipts.sizes[:lo]))
    cut = min(max(split - first_line, 0), lines.num_rows)
    pieces = []
    for file, piece in enumerate((lines.slice(0, cut), lines.slice(cut))):
        if piece.num_rows:
            pieces.append((file, tmp / f"pos-{day}-{index}-{file}.csv"))
            _csv(piece, pieces[-1][1])
    keep = SHARED.keep[(SHARED.keep >= lo) & (SHARED.keep < hi)] - lo
    bought = receipts.filter(receipts["member"]).select(["buyer", "amount_cents"])
    return pieces, bought, receipts.take(keep)


def pos_lines(
    rng, people: People, staff: Staff, activity: np.ndarray, date: dt.date, part: Receipts
) -> tuple[pa.Table, pa.Table]:
    """The lines of these receipts, and one row per receipt for the after-sales generator."""
    sizes, store, seconds, n, rows = part.sizes, part.store, part.seconds, part.n, int(part.sizes.sum())
    is_member = rng.random(n) < 0.45
    buyer = np.where(
        is_member, rng.choice(people.n_members, n, p=activity / activity.sum()), rng.integers(people.n_members, people.size, n)
    )
    is_member &= people.joined[buyer] <= np.datetime64(date)
    prefix = pa.array([s.receipt_prefix + f"-{date:%Y%m%d}" for s in world.STORES]).take(store)
    txn_id = pc.binary_join_element_wise(prefix, _zfill(part.seq, 7), "-")
    txn_time = np.datetime64(date) + seconds.astype("timedelta64[s]")

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
    catalogue = {
        name: pa.array(values).take(product)
        for name, values in (
            ("sku", _skus()),
            ("product_name", [p[1] for p in world.PRODUCTS]),
            ("category", [p[2] for p in world.PRODUCTS]),
            ("brand", [p[0] for p in world.PRODUCTS]),
        )
    }
    at_line = pa.array(r)
    take = lambda arr: (arr if isinstance(arr, pa.Array) else pa.array(arr)).take(at_line)  # noqa: E731
    lines = pa.table(
        {
            "txn_id": take(txn_id),
            "line_no": text(line_no),
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
            "qty": text(qty),
            "unit_price": money(price),
            "discount": money(discount),
            "amount": money(amount),
            "payment_method": take(payment),
            "card_no": take(receipt["card_no"]),
        }
    )
    total = np.bincount(r, weights=amount, minlength=n).astype(np.int64)
    first_product = np.array([p[1] for p in world.PRODUCTS])[product[np.cumsum(sizes) - sizes]]
    receipts = pa.table(
        {
            "txn_id": txn_id,
            "buyer": buyer,
            "member": is_member,
            "store": store,
            "seconds": seconds,
            "date": np.full(n, np.datetime64(date)),
            "flight_no": flight,
            "product": first_product,
            "amount_cents": total,
            "payment_method": payment,
            "card_no": receipt["card_no"],
        }
    )
    return lines, receipts


def money(cents: np.ndarray) -> pa.Array:
    """Integer cents -> decimal(12,2) text: 98000 -> '980.00', -9800 -> '-98.00'."""
    units, frac = np.divmod(np.abs(cents), 100)
    signed = pc.binary_join_element_wise(pc.if_else(pa.array(cents < 0), "-", ""), text(units), "")
    return pc.binary_join_element_wise(signed, _zfill(frac, 2), ".")


def _zfill(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(text(values), width, "0")


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
            pc.utf8_slice_codeunits(full, -4),
            "",
        )
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


def _record_purchases(people: People, bought: pa.Table, date: dt.date) -> None:
    buyer, cents = bought["buyer"].to_numpy(), bought["amount_cents"].to_numpy()
    people.last_purchase[buyer] = np.datetime64(date)
    np.add.at(people.points, buyer, cents // 100)
    np.maximum(people.points, 0, out=people.points)
    np.add.at(people.spend_cents, buyer, cents)


# -- CRM -----------------------------------------------------------------------------------------
MEMBERSHIP_HEADER = (
    "会员编号",
    "姓名",
    "性别",
    "出生日期",
    "证件类型",
    "证件号码",
    "手机号码",
    "电子邮箱",
    "国籍",
    "省份",
    "城市",
    "详细地址",
    "邮政编码",
    "入会日期",
    "会员等级",
    "积分余额",
    "累计消费金额",
    "营销授权",
    "微信OpenID",
    "最近消费日期",
)


def membership(rng, people: People, date: dt.date, lo: int, hi: int) -> pa.Table:
    """The CRM on that day, members lo..hi-1: those who had joined by then."""
    idx = lo + np.flatnonzero(people.joined[lo:hi] <= np.datetime64(date))
    at = pa.array(idx)
    n = len(idx)
    birth = people.birth[idx]
    iso = np.datetime_as_string(birth)
    y, m, d = (
        birth.astype("datetime64[Y]").astype(int) + 1970,
        birth.astype("datetime64[M]").astype(int) % 12 + 1,
        (birth - birth.astype("datetime64[M]")).astype(int) + 1,
    )
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


def _membership_part(seed: int, day: int, lo: int, hi: int, tmp: Path) -> tuple[Path, int]:
    """Members lo..hi-1 of the CRM on the day, in a worker, as a CSV piece."""
    table = membership(np.random.default_rng([seed, 4, day, lo]), SHARED.people, SHARED.date, lo, hi)
    _csv(table, tmp / f"members-{day}-{lo}.csv")
    return tmp / f"members-{day}-{lo}.csv", table.num_rows


# -- after-sales ---------------------------------------------------------------------------------
CASE_COLUMNS = (
    "case_no",
    "member_no",
    "txn_id",
    "created_at",
    "channel",
    "case_type",
    "description",
    "handler_name",
    "resolution",
    "refund_amount",
    "closed_at",
    "satisfaction",
)


def _cases_part(seed: int, day: int, lo: int, hi: int, tmp: Path) -> tuple[Path, int]:
    """Cases lo..hi-1 of the day, in a worker, as a CSV piece."""
    rng = np.random.default_rng([seed, 5, day, lo])
    notes = NoteWriter(random.Random(int(rng.integers(2**63))))
    table = after_sales(rng, notes, SHARED.people, SHARED.staff, SHARED.recent, SHARED.date, lo, hi - lo)
    _csv(table, tmp / f"cases-{day}-{lo}.csv")
    return tmp / f"cases-{day}-{lo}.csv", table.num_rows


def after_sales(
    rng, notes: NoteWriter, people: People, staff: Staff, recent: pa.Table, date: dt.date, first: int, n: int
) -> pa.Table:
    """Cases first+1 .. first+n of the day (their case numbers)."""
    day_start = dt.datetime.combine(date, dt.time())
    handlers = staff.name[staff.store == -1]
    # Every per-case random draw is made up front, vectorized; the loop only assembles text.
    kind = rng.random(n)
    rec = recent.take(rng.integers(0, max(1, recent.num_rows), n) if recent.num_rows else []).to_pydict()
    members, travellers = rng.integers(0, people.n_members, n), rng.integers(people.n_members, people.size, n)
    products = rng.integers(0, len(world.PRODUCTS), n)
    case_types = np.array([t for t, _ in world.CASE_TYPES])[choice(rng, world.CASE_TYPES, n)]
    channels = np.array([c for c, _ in world.CHANNELS])[choice(rng, world.CHANNELS, n)]
    created_s = rng.integers(9 * 3600, 21 * 3600, n)
    minutes_to_close = rng.integers(10, 600, n)
    closes, rated = rng.random(n) < 0.8, rng.random(n) < 0.7
    scores = rng.choice([1, 2, 3, 4, 5], n, p=[0.05, 0.07, 0.18, 0.35, 0.35])
    handler = handlers[rng.integers(0, len(handlers), n)]
    out = {c: [] for c in CASE_COLUMNS}
    for i in range(n):
        case_type = str(case_types[i])
        created = day_start + dt.timedelta(seconds=int(created_s[i]))
        if kind[i] < 0.85 and rec["txn_id"]:  # about a purchase
            who, txn = int(rec["buyer"][i]), rec["txn_id"][i]
            bought = dt.datetime.combine(rec["date"][i], dt.time()) + dt.timedelta(seconds=int(rec["seconds"][i]))
            created = max(created, bought + dt.timedelta(minutes=10))
            member_no = people.member_no[who].as_py() if rec["member"][i] else None
            flight, product, amount, card = rec["flight_no"][i], rec["product"][i], rec["amount_cents"][i], rec["card_no"][i]
            store = world.STORES[rec["store"][i]].name
        else:  # a member asking about points, or a walk-in without a receipt
            who = int(members[i]) if kind[i] < 0.95 else int(travellers[i])
            txn, member_no = None, (people.member_no[who].as_py() if who < people.n_members else None)
            _, product, _, price = world.PRODUCTS[int(products[i])]
            flight, amount, card, store, case_type = world.DEPARTURES[0][0], price * 100, None, world.STORES[4].name, "咨询"
        card = people.cards["银联"][who].as_py() if card and "*" in card else card
        subject = Subject(
            name=people.name[who].as_py(),
            female=bool(people.female[who]),
            mobile=people.mobile_shapes[0][who].as_py(),
            doc_type=people.doc_type[who].as_py(),
            doc_no=people.doc_no[who].as_py(),
            email=people.email[who].as_py(),
            address=people.address[who].as_py(),
            card=card,
            flight=flight,
            product=product,
            amount=f"{abs(amount) // 100}.{abs(amount) % 100:02d}",
            store=store,
        )
        closed = created + dt.timedelta(minutes=int(minutes_to_close[i]))
        is_closed = bool(closes[i]) and closed.date() == date
        out["case_no"].append(f"AS-{date:%Y%m%d}-{first + i + 1:05d}")
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
    unknown = digit_strings(rng, 1, 8, prefix="E")[0].as_py()
    requested = [f"{start - dt.timedelta(days=d)} 10:{d:02d}:00" for d in (9, 7, 5, 3)]
    return pa.table(
        {
            "requested_at": requested,
            "doc_no": [people.doc_no[by_doc].as_py(), None, None, unknown],
            "mobile": [None, people.mobile_shapes[1][by_mobile].as_py(), None, None],
            "member_no": [None, None, people.member_no[by_member].as_py(), None],
        }
    )


# -- writing -------------------------------------------------------------------------------------
def _csv(table: pa.Table, path: Path) -> None:
    """UTF-8 CSV rows (no header) per RFC 4180, with quotes only where a value needs them. Arrow
    writes a table where none does (most of them) several times faster than DuckDB; it cannot
    quote selectively (it quotes every string), so free text with commas or quotes goes to DuckDB."""
    # DuckDB also quotes an empty string (to tell it from a null) and a '#' (a comment character
    # to some readers): such tables go to DuckDB as well, so both writers give the same bytes.
    special = any(
        pc.any(pc.or_(pc.equal(column, ""), pc.match_substring(column, "#"))).as_py()
        for column in table.columns
        if column.type == pa.string()
    )
    if not special:
        try:
            return pcsv.write_csv(table, path, pcsv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a value with a delimiter, quote or line break
            pass
    con = duckdb.connect(config={"threads": 1})  # more threads only slow its CSV writer down
    con.register("export", table)
    con.execute(f"COPY export TO '{path}' (HEADER false, DELIMITER ',')")
    con.close()


class Export:
    """One export file in the system's encoding, written from UTF-8 pieces as they arrive."""

    def __init__(self, path: Path, header: tuple[str, ...] | list[str], encoding: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.encoding, self.rows = path.open("wb"), encoding, 0
        if encoding == "utf-8-sig":
            self.file.write(BOM)
        self.file.write((",".join(header) + "\n").encode(encoding.removesuffix("-sig")))

    def append(self, piece: Path, rows: int = 0) -> None:
        with piece.open("rb") as src:
            if self.encoding == "gb18030":
                _transcode(src, self.file, self.encoding)
            else:
                shutil.copyfileobj(src, self.file, 1 << 24)
        piece.unlink()
        self.rows += rows

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def _transcode(src, dst, encoding: str, chunk: int = 1 << 24) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    while block := src.read(chunk):
        dst.write(decoder.decode(block).encode(encoding))
    dst.write(decoder.decode(b"", final=True).encode(encoding))
