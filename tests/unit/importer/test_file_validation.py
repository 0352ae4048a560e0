"""File import: readers, column resolution, cell conversion and validation, reject report."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.errors import FileHeaderError, FileReadError, UnsupportedFileFormatError
from importer.files.readers import FileRows, RowError, detect_format
from importer.files.report import RejectReport, read_report
from importer.files.validation import Reject, RowValidator, normalize_uuid, plan_columns

ID = "11111111-2222-4333-8444-555555555555"


def test_columns_accept_our_and_dynamics_names_case_insensitively() -> None:
    plan = plan_columns(
        "contact",
        [
            "ContactId",
            "firstname",
            "_parentcustomerid_value",
            "OwnerId",
            "x@OData.Community.Display.V1.FormattedValue",
        ],
    )
    assert plan.id_column == "ContactId"
    assert plan.fields == {
        "firstname": "firstname",
        "_parentcustomerid_value": "parentcustomerid",
        "OwnerId": "ownerid",
    }
    assert plan.ignored == ("x@OData.Community.Display.V1.FormattedValue",)


def test_header_problems_are_typed() -> None:
    with pytest.raises(FileHeaderError, match="no id column"):
        plan_columns("account", ["name"])
    with pytest.raises(FileHeaderError, match="no columns"):
        plan_columns("account", ["id", "name", "shoe_size"])
    with pytest.raises(FileHeaderError, match="both set"):
        plan_columns("account", ["id", "primarycontactid", "_primarycontactid_value"])
    with pytest.raises(FileHeaderError, match="two id columns"):
        plan_columns("account", ["id", "accountid"])
    assert plan_columns("account", ["id", "shoe_size"], ignore_unknown=True).ignored == (
        "shoe_size",
    )


def test_csv_cells_convert_by_kind() -> None:
    plan = plan_columns(
        "account",
        [
            "id",
            "name",
            "revenue",
            "numberofemployees",
            "industrycode",
            "primarycontactid",
            "country",
            "statecode",
        ],
    )
    v = RowValidator("account", plan, typed=False)
    ok = v.validate(
        1,
        {
            "id": "{" + ID.upper() + "}",
            "name": "Rossi S.r.l.",
            "revenue": "1250.50",
            "numberofemployees": "12",
            "industrycode": "Consulenza",  # an option label, in Italian
            "primarycontactid": ID.replace("-", ""),
            "country": "Italia",
            "statecode": "",
        },
    )
    assert ok == (
        ID,
        {
            "name": "Rossi S.r.l.",
            "revenue": 1250.5,
            "numberofemployees": 12,
            "industrycode": 7,  # Consulting in the Dynamics standard set
            "primarycontactid": ID,
            "country": "IT",
            "statecode": None,
        },
    )


def test_every_bad_cell_of_a_row_is_reported() -> None:
    plan = plan_columns("account", ["id", "name", "revenue", "emailaddress1", "industrycode"])
    v = RowValidator("account", plan, typed=False)
    out = v.validate(
        7,
        {
            "id": "not-a-uuid",
            "name": "x" * 161,
            "revenue": "12,5",
            "emailaddress1": "nope",
            "industrycode": "99",
        },
    )
    assert isinstance(out, list)
    by_column = {r.column: r for r in out}
    assert set(by_column) == {"id", "name", "revenue", "emailaddress1", "industrycode"}
    assert all(r.row == 7 for r in out)
    assert by_column["id"].code == "invalid_record_id"
    assert "longer than 160" in by_column["name"].reason
    assert by_column["industrycode"].code == "invalid_field_value"
    assert "x" * 20 not in "".join(r.reason for r in out)  # values never copied


def test_jsonl_values_are_checked_as_typed() -> None:
    plan = plan_columns(
        "opportunity", ["opportunityid", "estimatedvalue", "closeprobability", "estimatedclosedate"]
    )
    v = RowValidator("opportunity", plan, typed=True)
    assert v.validate(1, {"opportunityid": ID, "estimatedvalue": 5, "closeprobability": 40.0}) == (
        ID,
        {"estimatedvalue": 5.0, "closeprobability": 40},
    )
    bad = v.validate(
        2, {"opportunityid": ID, "closeprobability": "high", "estimatedclosedate": "03/04/2025"}
    )
    assert isinstance(bad, list) and {r.column for r in bad} == {
        "closeprobability",
        "estimatedclosedate",
    }
    missing = v.validate(3, {"estimatedvalue": 1})
    assert isinstance(missing, list) and missing[0].code == "missing_id"
    empty = v.validate(4, {"opportunityid": ID})
    assert isinstance(empty, list) and empty[0].code == "no_fields"


def test_uuid_spellings() -> None:
    assert normalize_uuid(ID.upper()) == ID
    assert normalize_uuid("{" + ID + "}") == ID
    with pytest.raises(Exception, match="UUID"):
        normalize_uuid("1234")


def test_csv_reader_counts_rows_and_flags_ragged_ones(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('\ufeffid;name\n1;Alpha\n\n2;Beta;extra\n3;"Gamma;\nMulti"\n', encoding="utf-8")
    rows = list(FileRows(path, "csv"))
    assert [n for n, _ in rows] == [1, 2, 3]
    assert rows[0][1] == {"id": "1", "name": "Alpha"}
    assert isinstance(rows[1][1], RowError) and rows[1][1].code == "wrong_column_count"
    assert rows[2][1] == {"id": "3", "name": "Gamma;\nMulti"}


def test_jsonl_reader_flags_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\nnot json\n[1]\n\n{"id": 2, "x": 1}\n', encoding="utf-8")
    reader = FileRows(path, "jsonl")
    rows = list(reader)
    assert [n for n, _ in rows] == [1, 2, 3, 4]
    assert isinstance(rows[1][1], RowError) and isinstance(rows[2][1], RowError)
    assert reader.header == ["id", "x"]
    assert reader.bytes_read == path.stat().st_size


def test_format_detection_and_unreadable_files(tmp_path: Path) -> None:
    assert detect_format(Path("x.CSV")) == "csv"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.data"), "jsonl") == "jsonl"
    with pytest.raises(UnsupportedFileFormatError):
        detect_format(Path("x.xlsx"))
    with pytest.raises(FileReadError):
        list(FileRows(tmp_path / "missing.csv", "csv"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,name\n1,Citt\xe0\n".encode("latin-1"))
    with pytest.raises(FileReadError, match="UTF-8"):
        list(FileRows(latin, "csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FileHeaderError):
        list(FileRows(empty, "csv"))


def test_reject_report_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.csv"
    with RejectReport(path) as report:
        report.add(
            [
                Reject(3, "name", "invalid_field_value", "too long"),
                Reject(3, "id", "missing_id", "no id"),
            ]
        )
        report.add([Reject(9, "", "malformed_row", 'bad, "quoted"')])
    assert report.rows == 2 and report.entries == 3
    back = read_report(path)
    assert back[2] == Reject(9, "", "malformed_row", 'bad, "quoted"')
