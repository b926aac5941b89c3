"""Attacks on what is published, run against a real flow run's output.

dictionary  an attacker without the key hashes every candidate identifier, in every
            unkeyed or guessed-key scheme, into the tokens' format: no token comes out
linkage     an attacker holding some members' raw quasi-identifiers generalizes them with
            the public hierarchies at the published levels and looks for their classes:
            none falls in a class of fewer than k customers
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.runtime.paths import POLICIES
from flows.storage.footer import read_footer
from tests.conftest import TEST_KEY, read_all
from transforms import plan
from transforms.operators import Context, Pseudonymize
from transforms.policy import load_policies
from transforms.pseudonymize import TOKEN_BYTES, TOKEN_CHARS, Pseudonymizer, base32
from transforms.redact import NameMatcher
from transforms.steps import parse_table
from transforms.text import NORMALIZERS

DAY = dt.date(2026, 3, 1)


def _published_tokens(warehouse) -> tuple[set[str], set[str]]:
    """Every published token, and the partition versions they are keyed to."""
    policies = load_policies(POLICIES)
    tokens, units = set(), set()
    for path in warehouse.rglob("*.parquet"):
        meta = read_footer(path)
        policy = policies[meta["dataset"]]
        units.add(meta["unit"])
        table = pq.read_table(path)
        for c in policy.columns:
            if isinstance(c.operator, Pseudonymize) and c.output_name in table.column_names:
                tokens |= set(table[c.output_name].drop_null().to_pylist())
    return tokens, units


def _candidates(landing) -> dict[str, set[str]]:
    """Every identifier the exports hold, normalized as the pseudonyms are, with its domain: a
    superset of what a dictionary attack could ever hit (it enumerates, we know the answers)."""
    found: dict[str, set[str]] = {}
    for policy in load_policies(POLICIES).values():
        for date in (DAY, DAY + dt.timedelta(days=1)):
            table = read_all(landing, policy, date)
            for c in policy.columns:
                if isinstance(c.operator, Pseudonymize) and c.name in table.column_names:
                    values = NORMALIZERS[c.operator.normalize](table[c.name]).drop_null().to_pylist()
                    found.setdefault(c.operator.domain, set()).update(values)
    return found


def _as_token(digest: bytes) -> str:
    return base32(np.frombuffer(digest.ljust(TOKEN_BYTES, b"\0")[:TOKEN_BYTES], np.uint8).reshape(1, -1)).decode()


def _unkeyed(value: str, domain: str) -> set[str]:
    """What hashing a value without the key can give, in the tokens' format (base32, and hex)."""
    out = set()
    for data in (value.encode(), f"{domain}\0{value}".encode(), f"{domain}:{value}".encode()):
        for name in ("sha256", "sha1", "md5", "sha512", "blake2b"):
            digest = hashlib.new(name, data).digest()
            out |= {_as_token(digest), digest.hex()[:TOKEN_CHARS]}
    return out


def _guesses(pseudonymizer: Pseudonymizer, value: str, domain: str, units: set[str]) -> set[str]:
    """A key's token of the value, as the pipeline links with it and as each partition publishes it."""
    token = pseudonymizer.token(value, domain)
    return {token} | {pseudonymizer.unit_tokens(pa.array([token]), unit)[0].as_py() for unit in units}


def test_dictionary_attack_never_reproduces_a_token(published, landing):
    tokens, units = _published_tokens(published.warehouse)
    candidates = _candidates(landing)
    assert len(tokens) > 500 and sum(map(len, candidates.values())) > 1000
    guessed_keys = [Pseudonymizer(k) for k in (b"\0" * 32, b"tuomin" * 6, b"password" * 4, TEST_KEY.encode()[::-1])]
    hits = {
        (domain, v)
        for domain, values in candidates.items()
        for v in values
        if _unkeyed(v, domain) & tokens or any(_guesses(p, v, domain, units) & tokens for p in guessed_keys)
    }
    assert not hits, f"{len(hits)} identifier(s) hashed to a published token without the key"
    # The same attack with the key finds them: the test would see a weak pseudonym.
    keyed = Pseudonymizer(TEST_KEY.encode())
    assert sum(bool(_guesses(keyed, v, domain, units) & tokens) for domain, values in candidates.items() for v in values) > 500


def test_linkage_attack_finds_no_class_smaller_than_k(published, landing):
    policy = load_policies(POLICIES)["membership"]
    [path] = published.warehouse.glob("dataset=membership/period=*/*.parquet")  # the latest snapshot, the only one
    meta = read_footer(path)
    qis, k = meta["quasi_identifiers"], meta["k"]
    # The attacker: every third member's raw attributes, generalized as the metadata says.
    raw = parse_table(read_all(landing, policy, dt.date.fromisoformat(meta["period"])), policy).table
    raw = raw.take(pa.array(np.arange(0, raw.num_rows, 3)))
    built = plan.hierarchies(
        policy, Context(Pseudonymizer(TEST_KEY.encode()), POLICIES, NameMatcher([]), policy.privacy.reference_date)
    )
    attacker = pa.table(
        {
            c.output_name: built[c.name].generalize(raw[c.name], meta["levels"][c.output_name]).cast(pa.string())
            for c in policy.quasi_identifiers
        }
    )
    key = " AND ".join(f'a."{q}" IS NOT DISTINCT FROM c."{q}"' for q in qis)
    columns = ", ".join(f'"{q}"::VARCHAR AS "{q}"' for q in qis)
    sizes = duckdb.sql(
        f'WITH classes AS (SELECT {columns}, count(DISTINCT "{meta["entity_column"]}") AS people'
        f" FROM read_parquet('{path}') GROUP BY ALL)"
        f" SELECT coalesce(c.people, 0) FROM attacker a LEFT JOIN classes c ON {key}"
    ).fetchnumpy()
    people = next(iter(sizes.values()))
    matched = people[people > 0]
    assert len(matched) >= 0.9 * attacker.num_rows, "the attacker's records do not find their classes: the test is blind"
    assert (matched < k).sum() == 0
    assert (1 / matched).max() <= 1 / k
