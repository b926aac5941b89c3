"""After-sales free text as staff and customers type it, with the identifiers it embeds.

Each note comes back with the identifiers written into it (kind, text as written), so the same
generator feeds both the sample exports and the redaction benchmark's ground truth.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from sample_data import world
from sample_data.people import make_people

FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in map(chr, range(0x21, 0x7F))}


def full_width(text: str) -> str:
    return "".join(FULL_WIDTH.get(c, c) for c in text)


@dataclass
class Subject:
    """What a note may mention about the customer (raw values from the person's records)."""

    name: str
    female: bool
    mobile: str | None
    doc_type: str
    doc_no: str
    email: str | None
    address: str | None
    card: str | None
    flight: str
    product: str
    store: str
    amount: str


@dataclass
class Note:
    text: str
    identifiers: list[tuple[str, str]] = field(default_factory=list)  # (kind, as written)


class NoteWriter:
    """Renders notes; the choice of template and of each identifier's shape is seeded."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    # -- identifiers in the shapes people type them ------------------------------------------
    def mobile(self, number: str) -> str:
        shapes = (
            number,
            f"+86 {number[:3]} {number[3:7]} {number[7:]}",
            f"{number[:3]}-{number[3:7]}-{number[7:]}",
            full_width(number),
            f"{number[:3]} {number[3:7]} {number[7:]}",
            f"86{number}",
        )
        return self.rng.choices(shapes, weights=(40, 10, 12, 18, 12, 8))[0]

    def document(self, number: str) -> str:
        shapes = [number, full_width(number), number.lower()]
        if len(number) == 18:
            shapes.append(f"{number[:6]} {number[6:14]} {number[14:]}")
        return self.rng.choice(shapes)

    def card(self, number: str) -> str:
        groups = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        shapes = (number, groups, full_width(number), groups.replace(" ", "-"))
        return self.rng.choices(shapes, weights=(40, 30, 20, 10))[0]

    def email(self, address: str) -> str:
        return address if self.rng.random() < 0.8 else full_width(address)

    def name(self, person: Subject) -> str:
        if person.name.isascii() or self.rng.random() < 0.6:
            return person.name
        return person.name[0] + ("女士" if person.female else "先生")

    # -- the notes -----------------------------------------------------------------------------
    def description(self, s: Subject, case_type: str) -> Note:
        put = _Putter()
        name = put("name", self.name(s))
        options = []
        if s.mobile:
            options += [
                f"顾客{name}(手机{put('mobile', self.mobile(s.mobile))})"
                f"反映在{s.store}购买的{s.product}有破损，要求{case_type}。",
                f"{name}来电，称航班{put('flight', s.flight)}延误，询问提货事宜，"
                f"联系电话：{put('mobile', self.mobile(s.mobile))}",
                f"会员{name}要求把联系电话改为{put('mobile', self.mobile(s.mobile))}，\n已核实身份。",
            ]
        options += [
            f"顾客{name}，证件号{put('document', self.document(s.doc_no))}，"
            f'购买{s.product}后想{case_type}，说："包装拆了，还能退吗？"',
            f"{name}投诉收银员态度差，航班{put('flight', s.flight)}，金额{s.amount}元。",
            f"{s.doc_type}号码 {put('document', self.document(s.doc_no))} 的顾客称商品{s.product}与描述不符。",
        ]
        if s.email:
            options.append(f"客户邮箱{put('email', self.email(s.email))}，请将发票寄出，收件人{name}。")
        if s.address:
            options.append(f"收件人{name}，地址：{put('address', s.address)}，换货商品{s.product}请快递寄回。")
        if s.card:
            options.append(f"顾客称银行卡{put('card', self.card(s.card))}被重复扣款{s.amount}元，请财务核实, 谢谢")
        text = self.rng.choice(options)
        return Note(text, put.used(text))

    def resolution(self, s: Subject, case_type: str) -> Note:
        put = _Putter()
        options = [
            f"已为顾客办理{case_type}，退款{s.amount}元原路返回。",
            "已电话回访，顾客表示满意。",
            "商品已寄回仓库检验，待质检结果。",
        ]
        if s.card:
            options.append(f"已退款至尾号{s.card[-4:]}的银行卡。")
            options.append(f"已退款{s.amount}元至卡号{put('card', self.card(s.card))}。")
        if s.mobile:
            options.append(f'已短信通知{put("mobile", self.mobile(s.mobile))}，"请3个工作日内查收"。')
        text = self.rng.choice(options)
        return Note(text, put.used(text))


class _Putter:
    """Records each identifier a template embeds; only those in the chosen text are kept."""

    def __init__(self):
        self.candidates: list[tuple[str, str]] = []

    def __call__(self, kind: str, written: str) -> str:
        self.candidates.append((kind, written))
        return written

    def used(self, text: str) -> list[tuple[str, str]]:
        return list(dict.fromkeys((k, w) for k, w in self.candidates if w in text))


DECOYS = [
    "订单号20260301000481",
    "SKU 6900000158388",
    "2026-03-01 14:23:05",
    "积分12850",
    "第3次来电",
    "规格50ml",
    "退款1,280.00元",
    "工单AS-20260301-00031",
    "T2航站楼3号门",
    "会员等级白金卡",
    # everyday words that are also people's names (the dictionary's known weakness)
    "高峰期排队较长",
    "平安夜促销",
    "请文明购物",
    "金卡会员权益",
    "明天再来",
    "已安全检查",
    "王府井店缺货",
    "方便时回电",
]


def _flight(rng: random.Random) -> str:
    """A flight as the POS records it; cruise sailings are the ship code and the date (ADM0302)."""
    code, port, _ = rng.choice(world.DEPARTURES)
    return f"{code}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" if port == "WSK" else code


def labelled_notes(count: int, seed: int) -> tuple[list[tuple[str, list[tuple[str, str]]]], list[str]]:
    """`count` notes about people of a generated population, each with the identifiers it embeds
    (kind, as written); a third also carry decoy phrases that must survive redaction. Returns the
    notes and every person's name (the run's name dictionary)."""
    rng = random.Random(seed)
    people = make_people(seed, 2000, 2000, dt.date(2026, 3, 1))
    writer = NoteWriter(rng)
    out = []
    for _ in range(count):
        who = rng.randrange(people.size)
        card = people.cards["银联" if people.origin[who] == 0 else "VISA"][who].as_py()
        subject = Subject(
            name=people.name[who].as_py(),
            female=bool(people.female[who]),
            mobile=people.mobile_shapes[0][who].as_py(),
            doc_type=people.doc_type[who].as_py(),
            doc_no=people.doc_no[who].as_py(),
            email=people.email[who].as_py(),
            address=people.address[who].as_py(),
            card=card,
            flight=_flight(rng),
            product=rng.choice(world.PRODUCTS)[1],
            store=rng.choice(world.STORES).name,
            amount="980.00",
        )
        case_type = rng.choice([t for t, _ in world.CASE_TYPES])
        note = writer.description(subject, case_type) if rng.random() < 0.6 else writer.resolution(subject, case_type)
        text = note.text + ("，" + rng.choice(DECOYS) if rng.random() < 0.33 else "")
        out.append((text, note.identifiers))
    return out, people.name.to_pylist()
