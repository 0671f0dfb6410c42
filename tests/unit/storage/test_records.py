from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir.storage import ResultRecord, decode_record, encode_record

records = st.builds(
    ResultRecord,
    job_id=st.integers(min_value=1, max_value=2**64),
    model_id=st.text(max_size=40),
    model_sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    prompt_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(
        lambda h: "0x" + h
    ),
    output=st.text(max_size=500),
    prompt_tokens=st.integers(min_value=0, max_value=10**6),
    completion_tokens=st.integers(min_value=0, max_value=10**6),
    cache_hit=st.booleans(),
)


@given(records)
def test_a_record_always_encodes_to_the_same_bytes_and_round_trips(record: ResultRecord) -> None:
    encoded = encode_record(record)
    assert encode_record(ResultRecord.model_validate(record.model_dump())) == encoded
    assert decode_record(encoded) == record


def test_field_order_does_not_change_the_bytes() -> None:
    record = ResultRecord(
        job_id=1,
        model_id="m",
        model_sha256="a" * 64,
        prompt_hash="0x" + "b" * 64,
        output="hi",
        prompt_tokens=1,
        completion_tokens=2,
        cache_hit=False,
    )
    shuffled = dict(reversed(list(record.model_dump().items())))
    assert cbor2.dumps(shuffled, canonical=True) == encode_record(record)


@pytest.mark.parametrize("payload", [{"schema_version": 99, "job_id": 1}, {"job_id": 1}, [1, 2]])
def test_unknown_schema_versions_are_rejected(payload: object) -> None:
    with pytest.raises(ValueError, match="schema version"):
        decode_record(cbor2.dumps(payload))
