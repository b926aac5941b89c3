"""A published partition's footer, typed (flows/storage/footer.py): what every room reads is what
the file holds, old footers still read, and nothing a room needs is left as a bare key."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flows.storage.footer import METADATA_KEY, PartitionRecord, footer_json, read_footer, read_record
from transforms.criteria import PrivacyModel


def test_every_published_footer_reads_and_writes_back_the_same(published):
    """Read as a PartitionRecord and written again, a footer is the same JSON document, key for
    key: the record loses nothing the file says, and adds nothing."""
    paths = sorted(published.warehouse.glob("dataset=*/period=*/part-0.parquet"))
    assert len(paths) == 5
    for path in paths:
        stored, record = read_footer(path), read_record(path)
        assert json.loads(footer_json(record)) == stored, path
        assert record.published_rows == pq.ParquetFile(path).metadata.num_rows
        assert record.validation.success and record.k == 5 and record.metrics.k >= 5
        assert set(record.roles().values()) <= {
            "quasi_identifier",
            "sensitive_attribute",
            "insensitive",
            "direct_identifier",
            "free_text",
            "entity_key",
        }, record.roles()


def test_an_old_footer_reads_with_what_its_version_did_not_say(tmp_path):
    """Files written before a partition named its period (`export_date`) or what its rows are in
    a person's record (`record`) read through the model's one validator."""
    old = {"dataset": "after_sales", "export_date": "2026-03-01", "k": 5, "quasi_identifiers": ["case_type"], "key_id": "k1-x"}
    path = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"case_type": ["a"]}).replace_schema_metadata({METADATA_KEY: json.dumps(old).encode()}), path)
    record = read_record(path)
    assert (record.period, record.record, record.m, record.criteria()) == ("2026-03-01", "contacts", 0, ())
    assert PartitionRecord.model_validate(old | {"dataset": "pos"}).record == "purchases"
    assert PartitionRecord.model_validate(old | {"dataset": "membership"}).record == "profile"
    assert record.gate(pq.read_schema(path)).model == record.model() == PrivacyModel(5)


def test_a_footer_that_says_too_little_is_refused_not_guessed():
    """A footer without its dataset or period cannot be a partition's; one without k has no gate."""
    with pytest.raises(ValidationError, match="dataset"):
        PartitionRecord.model_validate({"period": "2026-03-01"})
    record = PartitionRecord.model_validate({"dataset": "pos", "period": "2026-03-01"})
    with pytest.raises(ValueError, match="records no k"):
        record.gate(pa.schema([("store", pa.string())]))


def test_a_partition_carries_its_privacy_model(published):
    """What a file records is the model its policy built: the same criteria, read back."""
    from flows.runtime.paths import POLICIES
    from transforms.policy import load_policies

    policies = load_policies(POLICIES)
    for path in sorted(published.warehouse.glob("dataset=*/period=*/part-0.parquet")):
        record = read_record(path)
        assert record.model() == policies[record.dataset].model, path
