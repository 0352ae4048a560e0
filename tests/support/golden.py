"""Golden wire messages of protocol version 1.

The bytes in ``tests/fixtures/wire`` were written once from these objects by
``python -m tests.support.golden`` and are committed. Later protocol versions must keep
decoding them; never regenerate them to make a test pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync_protocol.changesets import ChangesetResult, Mutation, MutationResult, PushRequest
from sync_protocol.checksum import ChannelChecksum
from sync_protocol.codec import encode
from sync_protocol.hlc import HLC
from sync_protocol.pull import BootstrapBatch, PullResponse, Removal
from sync_protocol.records import Record, RecordChange

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wire"

ACC = "6d1f0c52-3f5a-4e8e-b1a7-0c2f9d8e7a61"
CON = "c2b8a7e1-5d4c-4b3a-9f8e-7d6c5b4a3f21"

MESSAGES: dict[str, Any] = {
    "push_request": PushRequest(
        protocol=1,
        changeset_id="tab-it-0042:17",
        device_id="tab-it-0042",
        mutations=[
            Mutation(
                entity="account",
                id=ACC,
                base_version=3,
                fields={"telephone1": "+39 011 555 0101", "address1_city": "Torino"},
                clock=HLC(1_767_225_600_000, 2, "tab-it-0042"),
            ),
            Mutation(
                entity="contact",
                id=CON,
                base_version=0,
                fields={
                    "firstname": "Łucja",
                    "lastname": "Wójcik",
                    "parentcustomerid": ACC,
                    "emailaddress1": "l.wojcik@example.pl",
                },
                clock=HLC(1_767_225_600_500, 0, "tab-it-0042"),
            ),
            Mutation(
                entity="appointment",
                id="0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f",
                op="delete",
                base_version=5,
                clock=HLC(1_767_225_601_000, 0, "tab-it-0042"),
            ),
        ],
    ),
    "changeset_result": ChangesetResult(
        changeset_id="tab-it-0042:17",
        seq=90211,
        results=[
            MutationResult(
                index=0,
                entity="account",
                id=ACC,
                outcome="merged",
                version=4,
                fields={"telephone1": "+39 011 555 0101", "address1_city": "Torino"},
                field_outcomes={"telephone1": "applied", "address1_city": "applied"},
            ),
            MutationResult(index=1, entity="contact", id=CON, outcome="applied", version=1),
            MutationResult(
                index=2,
                entity="appointment",
                id="0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f",
                outcome="conflict",
                version=7,
                code="record_updated",
            ),
        ],
    ),
    "pull_response": PullResponse(
        protocol=1,
        checkpoint="opaque-token",
        has_more=False,
        changes=[
            RecordChange(
                entity="account",
                id=ACC,
                version=4,
                seq=90211,
                fields={
                    "name": "Città Nuova S.r.l.",
                    "revenue": 1250000.5,
                    "numberofemployees": 42,
                    "industrycode": 5,
                },
                clock=HLC(1_767_225_600_000, 2, "tab-it-0042"),
                channels=("country:IT", "territory:IT-NW"),
            ),
            RecordChange(
                entity="lead",
                id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                version=2,
                seq=90212,
                deleted=True,
            ),
        ],
        removals=[Removal(entity="contact", id=CON)],
        write_checkpoint=90211,
        checksums={"country:IT": ChannelChecksum(1, 12345678901234567890)},
    ),
    "bootstrap_batch": BootstrapBatch(
        records=[
            RecordChange(
                entity="quote",
                id="1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                version=1,
                fields={"name": "Angebot Müller", "totalamount": 9900.0},
            )
        ],
        resume="r1",
        total=1,
    ),
    "record": Record(
        entity="account",
        id=ACC,
        version=4,
        seq=90211,
        fields={"name": "Città Nuova S.r.l.", "ownerid": CON},
        clocks={
            "name": HLC(1_767_225_600_000, 2, "tab-it-0042"),
            "ownerid": HLC(1_767_000_000_000, 0, "upstream:dynamics"),
        },
        field_versions={"name": 4, "ownerid": 1},
        channels=["country:IT"],
        origin="device:tab-it-0042",
        upstream_etag='W/"915244"',
    ),
}


def write() -> None:
    """Write the fixture files (only when a new protocol version adds messages)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, msg in MESSAGES.items():
        (FIXTURES / f"v1_{name}.json").write_bytes(encode(msg, "json"))
        (FIXTURES / f"v1_{name}.msgpack").write_bytes(encode(msg, "msgpack"))


if __name__ == "__main__":
    write()
