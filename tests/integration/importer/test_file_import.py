"""File import through the applier: bad rows reported, good rows applied, reruns no-ops."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from importer.cli import COMMANDS
from importer.errors import PublishError
from importer.files.report import read_report
from importer.runtime import ImporterRuntime
from importer.state import FileProgress, file_key
from infra.nats.server import NatsServer

ROWS = 400
BAD_EVERY = 20  # 5 % of the rows are bad


def bad_cells(i: int) -> tuple[str, dict[str, str]]:
    """The column broken in bad row ``i`` and the cells that break it."""
    kind = (i // BAD_EVERY) % 5
    return [
        ("id", {"id": "not-a-guid"}),
        ("name", {"name": "x" * 161}),
        ("emailaddress1", {"emailaddress1": "no-at-sign"}),
        ("revenue", {"revenue": "1.234,50"}),
        ("industrycode", {"industrycode": "999"}),
    ][kind]


def write_accounts(path: Path) -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
    """A CSV of accounts with every 20th row broken; returns the good rows and the bad ones."""
    good: dict[str, dict[str, Any]] = {}
    bad: dict[int, str] = {}
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(
            f, ["accountid", "name", "emailaddress1", "revenue", "industrycode", "address1_city"]
        )
        w.writeheader()
        for i in range(1, ROWS + 1):
            rid = str(uuid.UUID(int=0xACC0_0000_0000_4000_8000_0000_0000_0000 + i))
            row = {
                "accountid": rid,
                "name": f"Società {i} S.r.l.",
                "emailaddress1": f"info{i}@example.it",
                "revenue": f"{i * 1000}.50",
                "industrycode": str((1, 6, 7, 10, 12, 30, 33)[i % 7]),
                "address1_city": "Città di Castello" if i % 2 else "",
            }
            if i % BAD_EVERY == 0:
                column, cells = bad_cells(i)
                row.update({("accountid" if k == "id" else k): v for k, v in cells.items()})
                bad[i] = "accountid" if column == "id" else column
            else:
                good[rid] = row
            w.writerow(row)
    return good, bad


async def test_bad_rows_are_reported_and_the_rest_is_imported(
    runtime: ImporterRuntime, store: RecordStore, tmp_path: Path, await_applied: Any
) -> None:
    path = tmp_path / "accounts.csv"
    good, bad = write_accounts(path)
    result = await runtime.files.run(path, "account")
    assert result.rows == ROWS
    assert result.valid == len(good) == ROWS - ROWS // BAD_EVERY
    assert result.rejected == len(bad) == ROWS // BAD_EVERY
    await await_applied(result.batch_ids)

    rejects = read_report(result.report_path or Path())
    assert {r.row: r.column for r in rejects} == bad
    assert all(r.reason and r.code for r in rejects)
    stored = await store.get_many([("account", rid) for rid in good])
    assert len(stored) == len(good)
    for rid, row in good.items():
        rec = stored[("account", rid)]
        assert rec.fields["name"] == row["name"]
        assert rec.fields["revenue"] == float(row["revenue"])
        assert rec.fields["address1_city"] == (row["address1_city"] or None)
        assert rec.origin == "upstream:file"

    # A second run of the same file changes nothing, even when forced to publish again.
    head = await store.head_seq()
    again = await runtime.files.run(path, "account")
    assert again.already_done and again.valid == len(good)
    forced = await runtime.files.run(path, "account", force=True)
    await await_applied(forced.batch_ids)
    assert await store.head_seq() == head
    assert {r.version for r in (await store.get_many(list(stored))).values()} == {1}


async def test_an_interrupted_import_resumes_after_the_last_published_batch(
    runtime: ImporterRuntime, store: RecordStore, tmp_path: Path, await_applied: Any
) -> None:
    path = tmp_path / "accounts.csv"
    good, _ = write_accounts(path)
    runtime.files.batch_rows = 50
    real_publish = runtime.file_publisher.publish
    calls = {"n": 0}

    async def failing(entity: str, mutations: Any, batch_id: str) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise PublishError("NATS went away")
        return await real_publish(entity, mutations, batch_id)

    runtime.file_publisher.publish = failing  # type: ignore[method-assign]
    with pytest.raises(PublishError):
        await runtime.files.run(path, "account")
    progress = await runtime.state.get(file_key(_sha(path), "account"), FileProgress)
    assert progress is not None and progress.status == "running" and progress.batches == 3

    runtime.file_publisher.publish = real_publish  # type: ignore[method-assign]
    result = await runtime.files.run(path, "account")
    assert result.resumed_batches == 3 and result.batches == ROWS // 50
    await await_applied(result.batch_ids)
    stored = await store.get_many([("account", rid) for rid in good])
    assert len(stored) == len(good)
    assert {r.version for r in stored.values()} == {1}


async def test_jsonl_with_dynamics_column_names(
    runtime: ImporterRuntime, store: RecordStore, tmp_path: Path, await_applied: Any
) -> None:
    path = tmp_path / "contacts.jsonl"
    account = str(uuid.uuid4())
    lines: list[dict[str, object]] = [
        {
            "contactid": str(uuid.UUID(int=i + 1)),
            "firstname": f"N{i}",
            "_parentcustomerid_value": account.upper(),
        }
        for i in range(30)
    ]
    lines[7]["_parentcustomerid_value"] = "nope"
    lines[9] = {"contactid": str(uuid.UUID(int=10)), "shoe_size": 44}
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n", encoding="utf-8")
    result = await runtime.files.run(path, "contact")
    assert (result.rows, result.valid, result.rejected) == (31, 28, 3)
    await await_applied(result.batch_ids)
    rejects = read_report(result.report_path or Path())
    assert [(r.row, r.column, r.code) for r in rejects] == [
        (8, "_parentcustomerid_value", "invalid_record_id"),
        (10, "", "bad_columns"),
        (31, "", "malformed_row"),
    ]
    rec = await store.get("contact", str(uuid.UUID(int=1)))
    assert rec is not None and rec.fields["parentcustomerid"] == account


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_command(nats_server: NatsServer, store_config: StoreConfig, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    good, bad = write_accounts(path)
    env = {
        "CRMSYNC_NATS_URL": nats_server.url,
        "CRMSYNC_STORE_SQLITE_PATH": store_config.sqlite_path,
        "CRMSYNC_GATEWAY_DEV_AUTH": "true",
        "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(tmp_path / "keys"),
        "CRMSYNC_CONFIG": "",
    }
    import click

    cli = click.Group(commands={c.name or "": c for c in COMMANDS})
    runner = CliRunner()
    first = runner.invoke(cli, ["import", str(path), "--entity", "account", "--no-wait"], env=env)
    assert first.exit_code == 0, first.output
    assert f"{ROWS} rows: {len(good)} imported, {len(bad)} rejected" in first.output
    assert (tmp_path / "accounts.csv.rejects.csv").exists()
    second = runner.invoke(cli, ["import", str(path), "--entity", "account", "--no-wait"], env=env)
    assert second.exit_code == 0 and "already imported" in second.output
    wrong = runner.invoke(cli, ["import", str(path), "--entity", "invoice"], env=env)
    assert wrong.exit_code == 1 and "unknown_entity" in wrong.output
