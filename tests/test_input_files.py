"""Input files and state files, careless or hostile: every case refused with one clear line.

Each test names what happened before the shared checks of :mod:`stochgrad._csv` and
:mod:`stochgrad.checkpoint` existed, so that a return of the old behaviour is recognised:

- a row shorter or longer than the header: accepted (hmm series, kinetics tables) or reported
  without its line;
- a byte that is not UTF-8: a raw ``UnicodeDecodeError`` (hmm series), or "not UTF-8" without
  saying where;
- a count of 99999999999999999999999: wrapped round to a negative int64;
- a header of millions of columns: every name printed in the error (120 MB at 10^7), and a
  log's columns checked in quadratic time (18.6 s at 40,000 columns);
- a gene named ``=cmd|...``: written as it is into the output CSV, a formula to a spreadsheet;
- a JSON state that is not an object, a spliced or hand-edited checkpoint: accepted.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad._csv import csv_cell, csv_text, not_utf8, summarize_names, table_rows
from stochgrad.apps.hmm import load_series
from stochgrad.apps.offpolicy.logfile import read_log
from stochgrad.apps.telegraph import read_counts, read_kinetics
from stochgrad.apps.telegraph.io import MAX_EXACT
from stochgrad.checkpoint import (
    DIGEST_FIELD,
    SHOWN_SETTINGS,
    CheckpointError,
    CheckpointMismatch,
    check_settings,
    load_json,
    load_state,
    save_state,
    state_digest,
)
from stochgrad.cli import main

LOG_HEADER = "x_0,action,reward,propensity"
LOG_ROW = "0.5,1,1,0.5"


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(gzip.compress(text) if path.name.endswith(".gz") else text)
    return path


def _read_hmm(path: Path):
    return load_series(path, "count")


# reader -> (header, a good data row, the count of fields of a row)
READERS = {
    "telegraph counts": (read_counts, "gene,c1,c2,c3", "A,0,1,2"),
    "telegraph kinetics": (read_kinetics, "gene,k_on,k_off,k_syn", "A,0.5,2,30"),
    "hmm series": (_read_hmm, "year,count,other", "1900,13,1"),
    "offpolicy log": (read_log, LOG_HEADER, LOG_ROW),
}


# ---------------------------------------------------------------------------------------------
# short and ragged rows
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("change", [-1, +1])
def test_a_row_shorter_or_longer_than_the_header_is_refused_naming_its_line(
    tmp_path, reader, change
):
    read, header, good = READERS[reader]
    width = header.count(",") + 1
    bad = ",".join(good.split(",")[: width + change] + ["7"] * max(change, 0))
    # line 1 the header, 2 and 3 good rows, 4 blank (skipped, but counted), 5 the bad row
    path = _write(tmp_path / "t.csv", f"{header}\n{good}\n{good}\n\n{bad}\n{good}\n")
    with pytest.raises(ValueError) as exc:
        read(path)
    msg = str(exc.value)
    expected = f"line 5 has {width + change} fields where the header (line 1) has {width}"
    assert msg.startswith(f"{path}: ") and expected in msg and "\n" not in msg


def test_a_quoted_field_over_two_lines_keeps_the_line_numbers_of_the_rows_after_it(tmp_path):
    path = _write(tmp_path / "t.csv", 'year,count,note\n1,2,"two\nlines"\n2,3\n')
    assert [line for line, _ in table_rows(path)] == [1, 2, 4]
    with pytest.raises(ValueError, match=r"line 4 has 2 fields where the header \(line 1\) has 3"):
        _read_hmm(path)


def test_a_header_wider_than_every_row_is_refused_for_counts(tmp_path):
    path = _write(tmp_path / "c.csv", "gene,c1,c2,c3,c4\nA,0,1,2\nB,3,1,2\n")
    with pytest.raises(ValueError, match=r"the header \(line 1\) has 5 fields but the data rows"):
        read_counts(path)
    # R's write.table leaves out the corner above the labels: a header one field short is fine
    cornerless = _write(
        tmp_path / "r.csv", "c1,c2,c3\nENSG00000000001,0,1,2\nENSG00000000002,3,1,2\n"
    )
    counts, names, _ = read_counts(cornerless)
    assert counts.tolist() == [[0, 1, 2], [3, 1, 2]] and names[0] == "ENSG00000000001"


# ---------------------------------------------------------------------------------------------
# bytes that are not UTF-8
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_a_byte_that_is_not_utf8_is_named_with_its_offset_line_and_the_encoding(
    tmp_path, reader, name
):
    read, header, good = READERS[reader]
    if name.endswith(".gz") and reader in ("hmm series", "offpolicy log"):
        pytest.skip("this reader takes plain .csv files")
    data = f"{header}\n{good}\n".encode() + "é,".encode("latin-1") + good.encode()[2:] + b"\n"
    path = _write(tmp_path / name, data)
    offset = data.index(b"\xe9")  # where the bad byte is, counted independently
    with pytest.raises(ValueError) as exc:
        read(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: not UTF-8 text: byte 0xe9 at offset {offset} (line 3)"), msg
    assert "save it as UTF-8 (the encoding expected)" in msg and "\n" not in msg


def test_the_offset_is_exact_past_a_block_boundary(tmp_path):
    # a two-byte character split across the reader's 1 MiB blocks is valid; a bad byte after
    # it is found at its place in the whole file
    line = ("a" * 99 + "\n").encode()
    data = line * ((1 << 20) // len(line)) + b"x" * 1000
    data = data[: (1 << 20) - 1] + "é".encode() + b"\n" * 3 + b"ok\xff\n"
    path = _write(tmp_path / "big.csv", data)
    want = data.index(b"\xff")
    line = data[:want].count(b"\n") + 1
    assert f"byte 0xff at offset {want:,} (line {line})" in str(not_utf8(path))


def test_a_file_ending_in_half_a_character_is_refused(tmp_path):
    path = _write(tmp_path / "t.csv", b"year,count\n1,2\n" + "é".encode()[:1])
    with pytest.raises(ValueError, match=r"not UTF-8 text: the last bytes .* incomplete"):
        _read_hmm(path)


def test_the_command_line_says_so_in_one_line(tmp_path, capsys):
    path = _write(tmp_path / "s.csv", b"year,count\n1900,\xff3\n")
    assert main(["hmm", "fit", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "not UTF-8 text: byte 0xff at offset 16 (line 2)" in err  # before: a raw codec error


# ---------------------------------------------------------------------------------------------
# counts too large
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", ["99999999999999999999999", str(2**63), str(MAX_EXACT + 2)])
def test_a_count_too_large_is_too_large_not_negative(tmp_path, count):
    path = _write(tmp_path / "c.csv", f"gene,c1,c2\nA,0,{count}\nB,3,1\n")
    with pytest.raises(ValueError) as exc:
        read_counts(path)
    msg = str(exc.value)
    assert "line 2, column 3: count" in msg and "is too large" in msg, msg
    assert "negative" not in msg


def test_the_largest_exact_count_is_read_exactly(tmp_path):
    path = _write(tmp_path / "c.csv", f"gene,c1,c2\nA,0,{MAX_EXACT}\nB,3,1\n")
    counts, _, _ = read_counts(path)
    assert counts.dtype == np.int64 and int(counts[0, 1]) == 2**53


# ---------------------------------------------------------------------------------------------
# wide headers: summarised, in linear time
# ---------------------------------------------------------------------------------------------
def test_summarize_names():
    names = [f"c{i}" for i in range(10_000_000)]
    assert summarize_names(names) == "c0, c1, c2, c3, c4, ... and 9999995 more"
    assert summarize_names(["x" * 100]) == "x" * 39 + "…"
    assert summarize_names(["a", "b"], quote=True) == "'a', 'b'"
    assert summarize_names(iter("abc"), 2) == "a, b, ... and 1 more"
    assert summarize_names([]) == "(none)"


WIDE = 100_000


def test_a_wide_header_is_summarised_for_an_hmm_series(tmp_path, capsys):
    path = _write(
        tmp_path / "w.csv",
        ",".join(f"c{i}" for i in range(WIDE)) + "\n" + ",".join(["1"] * WIDE) + "\n",
    )
    for column in (None, "nope"):
        with pytest.raises(ValueError) as exc:
            load_series(path, column)
        assert len(str(exc.value)) < 300 and f"... and {WIDE - 5} more" in str(exc.value)
    assert main(["hmm", "fit", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 300  # before: every name, 120 MB at 10^7


def test_a_wide_log_is_checked_in_linear_time_and_summarised(tmp_path):
    header = ",".join(f"x_{i}" for i in range(WIDE))
    path = _write(tmp_path / "w.csv", header + "\n" + ",".join(["1"] * WIDE) + "\n")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="missing columns 'action', 'reward', 'propensity'"):
        read_log(path)
    # before: two quadratic scans of the header, 18.6 s at 40,000 columns (about 2 min here)
    assert time.perf_counter() - start < 20
    repeated = _write(tmp_path / "r.csv", ",".join(["x_0"] * WIDE) + "\n")
    with pytest.raises(ValueError) as exc:
        read_log(repeated)
    assert "repeated: x_0" in str(exc.value) and len(str(exc.value)) < 300


def test_an_action_column_numbered_beyond_reach_is_named_without_counting_to_it(tmp_path):
    text = f"{LOG_HEADER},pi0_0,pi0_1,pi0_99999999999\n{LOG_ROW},0.5,0.5,0\n{LOG_ROW},0.5,0.5,0\n"
    with pytest.raises(ValueError, match="missing pi0_2, pi0_3, pi0_4, pi0_5, pi0_6"):
        read_log(_write(tmp_path / "p.csv", text))


# ---------------------------------------------------------------------------------------------
# cells a spreadsheet would run
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@A1", "\t=1", "\r=1", "-", "=1"]
)
def test_a_formula_cell_is_escaped(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["-1.5", "+2e3", "-7", "1e-5", "-inf", "nan", ".5", "gene"])
def test_numbers_and_plain_text_are_written_as_they_are(text):
    assert csv_cell(text) == text
    assert csv_cell(-1.5) == -1.5 and csv_cell(3) == 3


def test_written_csv_reads_back_with_the_formulas_shown_as_text():
    rows = list(
        csv.reader(csv_text(["gene", "=x"], [["=1+1", -1.5], ["-1.5", "@me"]]).splitlines())
    )
    assert rows == [["gene", "'=x"], ["'=1+1", "-1.5"], ["-1.5", "'@me"]]


def test_telegraph_fit_escapes_gene_names_in_kinetics_csv(tmp_path, one_thread):
    names = ["=cmd|' /C calc'!A0", "+SUM(1)", "-1.5", "@x"]
    rng = np.random.default_rng(0)
    rows = ["gene," + ",".join(f"c{j}" for j in range(40))]
    rows += [f'"{n}",' + ",".join(map(str, rng.poisson(4, 40))) for n in names]
    path = _write(tmp_path / "c.csv", "\n".join(rows) + "\n")
    out = tmp_path / "o"
    assert (
        main(["telegraph", "fit", str(path), "--no-ci", "--backend", "serial", "--out", str(out)])
        == 0
    )
    with open(out / "kinetics.csv", newline="") as fh:
        first = [r[0] for r in csv.reader(fh)][1:]
    # before: the names were written as they are, formulas to a spreadsheet
    assert first == ["'=cmd|' /C calc'!A0", "'+SUM(1)", "-1.5", "'@x"]


# ---------------------------------------------------------------------------------------------
# state files: JSON that is not an object, altered checkpoints, other kinds
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"[1, 2]", "holds a list"),
        (b'"state"', "holds a str"),
        (b"3", "holds an int"),
        (b"null", "holds nothing"),
        (b'{"a": 1', "truncated JSON"),
        (b"[" * 100_000, "truncated JSON|nested too deeply"),
        (b"\x80\x02}q\x00.", "not UTF-8"),
    ],
)
def test_json_that_is_not_an_object_is_refused(tmp_path, content, what):
    path = _write(tmp_path / "s.json", content)
    with pytest.raises(CheckpointError, match=what) as exc:
        load_json(path, expected=dict)
    assert str(exc.value).startswith(f"{path}: ") and "--restart" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_greeks_state_that_is_not_an_object_is_refused(tmp_path):
    from stochgrad.apps.finance import Market, Option, estimate_greeks

    path = _write(tmp_path / "g.json", json.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="g.json") as exc:
        estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 100,
                        checkpoint=path, seed=0)  # fmt: skip
    assert "\n" not in str(exc.value)


def test_a_digest_finds_a_checkpoint_altered_since_it_was_written(tmp_path):
    path = tmp_path / "c.pt"
    state = {"config": {"steps": 3}, "w": torch.arange(4.0), "names": ["a", "b"]}
    save_state(state, path)
    assert load_state(path).keys() == state.keys()  # the digest is checked and left out
    raw = torch.load(path, weights_only=True)
    assert raw[DIGEST_FIELD] == state_digest(state)
    for change in (
        lambda s: s.update(w=torch.arange(5.0)),  # another shape
        lambda s: s.update(w=torch.arange(4)),  # another dtype, same values
        lambda s: s.update(names=["a", "c"]),
        lambda s: s.pop("names"),
    ):
        altered = dict(raw)
        change(altered)
        torch.save(altered, path)
        with pytest.raises(CheckpointError, match="altered since it was written"):
            load_state(path)
    # a file of an earlier release has no digest: read as it is
    torch.save(state, path)
    assert load_state(path)["names"] == ["a", "b"]


def test_a_checkpoint_of_another_kind_is_named_so_and_long_differences_cut(tmp_path):
    with pytest.raises(CheckpointMismatch, match="a checkpoint of another kind") as exc:
        check_settings({"vocab": 1, "hidden": 2}, {"samples": 3, "seed": 0, "deltas": [0]}, "c.pt")
    assert "--restart" in str(exc.value)
    saved = {f"s{i}": i for i in range(1000)}
    now = {f"s{i}": i + 1 for i in range(1000)}
    with pytest.raises(CheckpointMismatch) as exc:
        check_settings(saved, now, "c.pt")
    msg = str(exc.value)
    assert "s0: 0 saved, 1 now" in msg and f"... and {1000 - SHOWN_SETTINGS} more" in msg
    assert len(msg) < 500
    assert msg.endswith("pass --restart to start afresh")
