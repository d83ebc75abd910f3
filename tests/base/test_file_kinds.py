"""The one file-type table: it knows every type README says is accepted, and the lists read it."""

import re
from pathlib import Path

from orchestrator.file_kinds import KINDS, input_extensions, kind_of, sniff, upload_labels
from orchestrator.planning.embedded import FILE_TYPES, file_type
from orchestrator.server.files import ACCEPTED, MEDIA_TYPES

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_inputs() -> dict[str, list[str]]:
    """The extensions README's 'Inputs:' paragraph lists, by kind."""
    text = " ".join(README.read_text().split())
    found = re.search(
        r"Inputs: audio \(([^)]*)\) and images \(([^)]*)\), and text files \(([^)]*)\)", text
    )
    assert found, "README no longer says 'Inputs: audio (...) and images (...), and text files'"
    return {
        kind: [e.strip().lstrip(".") for e in group.split(",")]
        for kind, group in zip(("audio", "image", "text"), found.groups(), strict=True)
    }


def test_every_type_readme_says_is_accepted_is_read_by_a_run():
    listed = _readme_inputs()
    assert listed["audio"] and listed["image"] and listed["text"]
    for io_type, extensions in listed.items():
        for ext in extensions:
            kind = kind_of(f"input.{ext.upper()}")
            assert kind is not None and kind.named, f".{ext} is in README but not in the table"
            assert kind.io_type == io_type
            assert file_type(f"/in/x.{ext}") == io_type


def test_the_planner_reads_its_extensions_from_the_table():
    assert FILE_TYPES == input_extensions()
    assert set(FILE_TYPES) == {"audio", "image", "text"}
    assert file_type("data.json") is None and file_type("report.pdf") is None


def test_the_server_lists_serves_and_sniffs_from_the_table():
    uploaded = [k for k in KINDS if k.uploaded]
    assert ACCEPTED == upload_labels()
    for kind in uploaded:
        assert MEDIA_TYPES[kind.ext] == kind.mime
    assert MEDIA_TYPES["txt"] == "text/plain" and "md" not in MEDIA_TYPES
    labels = [k.label for k in uploaded if k.label]
    assert all(label in ACCEPTED for label in labels) and "TIFF" not in ACCEPTED


def test_sniffed_content_is_a_row_of_the_table():
    png = sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)
    wav = sniff(b"RIFF\0\0\0\0WAVEfmt ")
    assert png is kind_of("x.png") and wav is kind_of("x.wav")
    assert sniff(b"%PDF-1.7") is None


def test_text_uploads_are_the_text_kinds_a_run_reads_checked_to_be_text():
    from orchestrator.file_kinds import text_kind, text_problem

    read = {k.ext for k in KINDS if k.io_type == "text" and k.named}
    assert read == set(FILE_TYPES["text"])
    assert {e for e in read if text_kind(f"notes.{e.upper()}") is not None} == read
    assert text_kind("data.json") is None and text_kind("photo.png") is None
    assert text_kind(None, "text/plain") is kind_of("x.txt") and text_kind(None, "x/y") is None
    assert all(f".{ext}" in upload_labels() for ext in read)
    assert text_problem("Grüße, café\n\ttabs".encode()) is None
    assert "not UTF-8" in text_problem(b"\xff\xfe\x00binary")
    assert "binary data" in text_problem(b"a\x00b")
