"""Text tables in and out, one behaviour for every reader and writer of the package.

- Reading (:func:`table_rows`): UTF-8 only (a byte that is not is refused naming the file, its
  offset and line, and the encoding expected), ``.gz`` read through, blank lines skipped, each
  row with the line it starts on, so that :func:`ragged_row` can name a row shorter or longer
  than it should be.
- Messages (:func:`summarize_names`): a list of names in an error is cut to its first few and
  "... and N more"; a header of ten million columns gives a short line, not a 100 MB one.
- Writing (:func:`csv_cell`, :func:`csv_text`): a text cell starting with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a leading ``'`` so that a spreadsheet shows it instead
  of running it as a formula (OWASP, "CSV Injection"); numbers, negative ones included, are
  written as they are.

>>> summarize_names([f"c{i}" for i in range(10_000_000)])
'c0, c1, c2, c3, c4, ... and 9999995 more'
>>> [csv_cell(v) for v in ["=1+2", "-1.5", "@SUM(A1)", "gene", -2.0]]
["'=1+2", '-1.5', "'@SUM(A1)", 'gene', -2.0]
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "csv_cell",
    "csv_text",
    "not_utf8",
    "ragged_row",
    "summarize_names",
    "table_rows",
]

#: Names shown in a message before "... and N more".
SHOWN_NAMES = 5
#: Characters of one name shown in a message (a name can be a whole line of a bad file).
NAME_CHARS = 40


def summarize_names(names: Iterable[Any], limit: int = SHOWN_NAMES, *, quote: bool = False) -> str:
    """The first ``limit`` of ``names``, comma-separated, then "... and N more" if there are more.

    Each name is cut to :data:`NAME_CHARS` characters; ``quote`` shows them as ``repr``.

    >>> summarize_names(["a", "b"])
    'a, b'
    >>> summarize_names("abcdefg", 3, quote=True)
    "'a', 'b', 'c', ... and 4 more"
    >>> summarize_names([])
    '(none)'
    """
    names = list(names) if not isinstance(names, Sequence) else names
    shown = []
    for v in names[:limit]:
        text = repr(v) if quote else str(v)
        shown.append(text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…")
    more = len(names) - len(shown)
    if not shown:
        return "(none)"
    return ", ".join(shown) + (f", ... and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # noqa: SIM115


def not_utf8(path: str | Path) -> ValueError:
    """The error for a file that is not UTF-8: it names the first bad byte's offset and line.

    The file is read again in blocks (decompressed if ``.gz``) to find the byte, so memory
    stays bounded whatever its size.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(p, "wb").write(b"a,b\\n1,\\xe9\\n")
    >>> print(str(not_utf8(p)).replace(p, "t.csv"))
    t.csv: not UTF-8 text: byte 0xe9 at offset 6 (line 2) cannot be decoded; save it as UTF-8 (the encoding expected), e.g. with iconv -f latin1 -t utf-8
    """
    path = Path(path)
    where = "somewhere"
    try:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, lines = 0, 1
        with _open_binary(path) as fh:
            while block := fh.read(1 << 20):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    # the decoder may hold back up to 3 bytes of the previous block
                    held = len(exc.object) - len(block)
                    at = offset - held + exc.start
                    lines += exc.object[: exc.start].count(b"\n")
                    bad = exc.object[exc.start]
                    where = f"byte 0x{bad:02x} at offset {at:,} (line {lines})"
                    break
                offset += len(block)
                lines += block.count(b"\n")
            else:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    where = f"the last bytes (offset {offset:,}, line {lines}), an incomplete character,"
    except (OSError, EOFError, zlib.error):
        pass
    return ValueError(
        f"{path}: not UTF-8 text: {where} cannot be decoded; save it as UTF-8 (the encoding "
        "expected), e.g. with iconv -f latin1 -t utf-8"
    )


def table_rows(path: str | Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of every non-blank row of a UTF-8 text table (``.gz`` read through).

    ``line`` is where the row starts (1 for the first line; a quoted field may span lines). A
    byte order mark is dropped.

    Raises:
        OSError: the file cannot be opened.
        ValueError: not UTF-8 (:func:`not_utf8`), a malformed CSV row or a broken ``.gz``,
            naming the file.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(p, "w").write("a,b\\n\\n1,2\\n")
    >>> list(table_rows(p))
    [(1, ['a', 'b']), (3, ['1', '2'])]
    """
    path = Path(path)
    if _is_gzip(path):
        fh = gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # noqa: SIM115
    else:
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    with fh:
        reader = csv.reader(fh, delimiter=delimiter)
        end = 0
        try:
            for row in reader:
                start, end = end + 1, reader.line_num
                if row and any(v.strip() for v in row):
                    yield start, row
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        except csv.Error as exc:
            raise ValueError(f"{path}: line {end + 1}: not a readable CSV row ({exc})") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"{path}: not a readable CSV file (broken gzip: {exc})") from None


def ragged_row(path: str | Path, line: int, fields: int, expected: int, against: str) -> ValueError:
    """The error for a row of ``fields`` fields where ``against`` has ``expected``.

    >>> print(ragged_row("t.csv", 3, 2, 4, "the header (line 1)"))
    t.csv: line 3 has 2 fields where the header (line 1) has 4; every row needs one field per column (an empty field marks a missing value)
    """
    return ValueError(
        f"{path}: line {line} has {fields} field{'s' if fields != 1 else ''} where {against} has "
        f"{expected}; every row needs one field per column (an empty field marks a missing value)"
    )


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# what a spreadsheet (and float()) reads as a number: decimals, exponents, inf and nan
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.I)


def csv_cell(value: Any) -> Any:
    """``value``, or, for text a spreadsheet would run as a formula, the text after a ``'``.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is escaped
    (OWASP's CSV-injection guidance); text that is a number (``-1.5``, ``+2e3``, ``-inf``) and
    values that are not text are returned unchanged.

    >>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_cell("-3"), csv_cell("\\tx"), csv_cell(7)
    ('\\'=HYPERLINK("http://x")', '-3', "'\\tx", 7)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document (``\\n`` line ends) of ``header`` and ``rows``, every cell through
    :func:`csv_cell`.

    >>> print(csv_text(["gene", "k"], [["=cmd|' /C calc'!A0", -1.5]]), end="")
    gene,k
    '=cmd|' /C calc'!A0,-1.5
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()
