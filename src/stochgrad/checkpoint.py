"""Saving and loading work in progress: atomic, locked, and never unpickling a user's file.

Everything a study or a trainer writes goes through this module:

- :func:`atomic_write` (and :func:`save_state`, :func:`save_json`, :func:`write_text`) write a
  temporary file with a unique name beside the target, flush it to disk and rename it over the
  target, so a reader sees the old file or the new one, never half of one, and two writers never
  share a temporary file.
- :func:`load_state` reads ``.pt`` files with ``torch.load(weights_only=True)`` (tensors and plain
  containers only: a planted file cannot run code) and :func:`load_json` reads JSON; a missing
  field, a corrupt, truncated, empty or foreign file raises :class:`CheckpointError` with one line
  that names the file, what is wrong and how to start afresh. A dict saved by :func:`save_state`
  carries a SHA-256 digest of its contents (:func:`state_digest`), so that a file altered since
  it was written (a tensor reshaped, a field dropped, parts spliced from another file) is refused
  too, not read into wrong numbers.
- :class:`OutputLock` holds an exclusive lock on an output folder for the length of a run, so a
  second run on the same folder gets a clear error instead of a race.
- :class:`RunCheckpoint` keeps the finished runs and mid-run states of a study keyed by tuples
  (estimator, seed, ...), under one configuration; loading it with other settings raises
  :class:`CheckpointMismatch` naming what differs. Saving merges with what another process saved
  to the same file meanwhile, under a lock, so two writers lose nothing.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> save_json({"step": 3}, path)
>>> load_json(path)
{'step': 3}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import torch

from stochgrad._csv import summarize_names

try:  # POSIX advisory locks; elsewhere an exclusively created lock file stands in
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CheckpointError",
    "CheckpointMismatch",
    "DIGEST_FIELD",
    "OutputBusy",
    "OutputLock",
    "RESTART_HINT",
    "RunCheckpoint",
    "atomic_write",
    "check_settings",
    "load_json",
    "load_state",
    "save_json",
    "save_state",
    "state_digest",
    "write_text",
]

RESTART_HINT = "delete it, or rerun the command with --restart, to start afresh"


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (mkstemp makes files private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


class CheckpointError(ValueError):
    """A checkpoint or model file that cannot be used (corrupt, truncated, empty, foreign)."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint made with other settings than the run that found it."""


class OutputBusy(RuntimeError):
    """Another run holds the lock on an output folder."""


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a unique temporary file, then a rename.

    The temporary file lies in the target's folder (a rename across file systems is not
    atomic) and has a name of its own (``tempfile.mkstemp``), so concurrent writers never
    collide; it is removed if ``write`` fails.

    Args:
        path: the file to (re)write; its folder is created.
        write: called with the binary file handle.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def save_json(data: Any, path: str | Path, *, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically (NaN and infinities refused: not JSON)."""
    text = json.dumps(data, indent=indent, allow_nan=False)
    write_text(path, text + "\n")


#: The field :func:`save_state` adds to a dict: a SHA-256 digest of the rest, checked on load.
DIGEST_FIELD = "stochgrad_sha256"


def _feed(h: Any, value: Any) -> None:
    """Feed ``value`` (tensors, plain values, containers) to the hash ``h``, unambiguously."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        t = t.to_dense() if t.layout != torch.strided else t
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}:".encode() + data)
    else:  # numbers, None, bools, dtypes, sizes: their type and exact repr
        h.update(f"O{type(value).__name__}:{value!r};".encode())


def state_digest(state: Any) -> str:
    """SHA-256 of ``state``'s contents (tensor dtypes, shapes and bytes; plain values; keys in
    order): what :func:`save_state` stores, and :func:`load_state` checks.

    >>> state_digest({"a": torch.ones(2)}) == state_digest({"a": torch.ones(2)})
    True
    >>> state_digest({"a": torch.ones(2)}) == state_digest({"a": torch.ones(3)})
    False
    """
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def save_state(state: Any, path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` atomically.

    ``state`` should hold only tensors, numbers, strings, ``None`` and lists/tuples/dicts of
    them: what :func:`load_state` accepts back (``weights_only=True``). A dict gets one more
    field, :data:`DIGEST_FIELD`, the :func:`state_digest` of the rest, so that a file altered
    since (a tensor reshaped, a field dropped or spliced in from another file) is refused on
    load; :func:`load_state` removes it.
    """
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k != DIGEST_FIELD}
        state[DIGEST_FIELD] = state_digest(state)
    atomic_write(path, lambda fh: torch.save(state, fh))


def _refuse(path: Path, what: str, hint: str = RESTART_HINT) -> CheckpointError:
    return CheckpointError(f"{path}: {what}; {hint}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and up: torch's legacy format, or a bare pickle


def _what_is_wrong(path: Path, exc: BaseException | None = None) -> str:
    """Why ``path`` is not a readable PyTorch file, judged by its bytes (then by ``exc``)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
    text = str(exc) if exc is not None else ""
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return "truncated (the end of its archive is missing: an interrupted write or copy?)"
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                broken = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return "corrupt (a damaged zip archive)"
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a zip archive, not a PyTorch file"
        if broken is not None:
            return f"corrupt (its part {broken} fails its checksum)"
    elif not head.startswith(_PICKLE_MAGIC):
        if size < 4:
            return f"truncated or not a PyTorch file (only {size} byte{'s' if size > 1 else ''})"
        control = sum(b < 32 and b not in b"\t\n\r" or b == 127 for b in head)
        kind = "text" if control * 20 <= len(head) else "binary data of another format"
        return f"not a PyTorch file (it starts with {kind})"
    if "Weights only load failed" in text or "Unsupported global" in text:
        return (
            "not a stochgrad file: it holds Python objects, which are never loaded (a planted "
            "file could run code)"
        )
    if isinstance(exc, EOFError) or "truncated" in text or "central directory" in text:
        return "truncated (an interrupted write or copy?)"
    if exc is None:
        return "unreadable"
    return f"corrupt ({type(exc).__name__}: {_first_line(exc)})"


def load_state(
    path: str | Path, *, map_location: str | torch.device = "cpu", hint: str = RESTART_HINT
) -> Any:
    """Read a ``.pt`` file written by :func:`save_state`, never unpickling arbitrary objects.

    Args:
        path: the file.
        map_location: where tensors are put (default the CPU: a GPU-made file loads anywhere).
        hint: what the error message tells the user to do about a bad file.

    Raises:
        CheckpointError: missing, empty, truncated, corrupt or foreign (text, random bytes, a
            zip archive that is not PyTorch's, or a file holding objects other than tensors
            and plain containers, as a planted pickle would), in one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file", hint="check the path")
    if path.stat().st_size == 0:
        raise _refuse(path, "the file is empty (an interrupted write?)", hint)
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: refused below
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds: zip, EOF, unpickling, index errors
        try:
            what = _what_is_wrong(path, exc)
        except OSError as err:
            what = f"unreadable ({err.strerror or err})"
        raise _refuse(path, what, hint) from None
    if isinstance(state, dict) and DIGEST_FIELD in state:  # files of earlier releases have none
        digest = state.pop(DIGEST_FIELD)
        if digest != state_digest(state):
            raise _refuse(
                path,
                "altered since it was written (its contents do not match their SHA-256 digest)",
                hint,
            )
    return state


def load_json(
    path: str | Path, *, hint: str = RESTART_HINT, expected: type | tuple[type, ...] = object
) -> Any:
    """Read a JSON file; a missing, empty, undecodable or invalid file raises one clear line.

    Args:
        path: the file.
        hint: what the error message tells the user to do about a bad file.
        expected: the type the document must have (``dict``: a JSON object).

    Raises:
        CheckpointError: missing, empty, not UTF-8, not JSON, or not of type ``expected``.
    """
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file", hint="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _refuse(path, "not JSON (not UTF-8 text: a binary or foreign file)", hint) from None
    if not text.strip():
        raise _refuse(path, "the file is empty (an interrupted write?)", hint)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text.rstrip())
        what = "truncated JSON" if cut else "not valid JSON"
        raise _refuse(path, f"{what} ({exc.msg} at line {exc.lineno})", hint) from None
    except RecursionError:
        raise _refuse(path, "not usable JSON (nested too deeply)", hint) from None
    if not isinstance(data, expected):
        raise _refuse(path, f"holds {_describe(data)}, not a stochgrad state of this kind", hint)
    return data


def _describe(value: Any) -> str:
    """What a loaded file holds, for a message: ``a list``, ``a dict with keys a, b, ...``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        keys = summarize_names(list(value), quote=True)
        return f"a dict with keys {keys}" if value else "an empty dict"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def field(state: Any, key: str, path: str | Path, kind: type | tuple[type, ...] = object) -> Any:
    """``state[key]``, or a :class:`CheckpointError` naming the file when it is missing or of
    another type (a file from another program, another command, or another version)."""
    if not isinstance(state, dict) or key not in state:
        raise _refuse(
            Path(path),
            f"not a stochgrad checkpoint of this kind (no {key!r} field; it holds {_describe(state)})",
        )
    value = state[key]
    if not isinstance(value, kind):
        raise _refuse(Path(path), f"field {key!r} has an unexpected type {type(value).__name__}")
    return value


# What a saved state holds, checked field by field (helpers of the loaders, like ``field``; not in
# __all__). These raise plain ValueError/TypeError naming the field (a ``from_state`` does not know
# its file); RunCheckpoint and the study scaffold turn them into one line naming the file. Files
# of earlier releases carry no digest: only these checks stand between an altered field and
# wrong numbers.
def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def saved_value(state: Any, key: str, kind: type | tuple[type, ...] = object) -> Any:
    """``state[key]`` of a saved state: a :class:`ValueError` naming ``key`` when it is missing,
    a :class:`TypeError` when ``state`` is not a dict or the value is not a ``kind``.

    >>> saved_value({"steps": 3}, "steps", int)
    3
    >>> saved_value({"steps": 3}, "lr", float)
    Traceback (most recent call last):
    ...
    ValueError: no field 'lr'
    """
    if not isinstance(state, dict):
        raise TypeError(f"expected a dict holding {key!r}, got {type(state).__name__}")
    if key not in state:
        raise ValueError(f"no field {key!r}")
    value = state[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        name = _kind_name(kind)
        article = "an" if name[0] in "aeiou" else "a"
        raise TypeError(f"{key} must be {article} {name}, got {type(value).__name__}")
    return value


_INTS = (int, np.integer)
_REALS = (int, float, np.integer, np.floating)


def _to_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the floats
        digits = len(str(abs(int(value))))
        raise ValueError(f"{key} must be in float range, got an int of {digits} digits") from None


def saved_int(
    state: Any, key: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``state[key]`` checked to be an int in ``[minimum, maximum]`` (bools refused).

    >>> saved_int({"step": -2}, "step", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: step must be >= 0, got -2
    """
    value = saved_value(state, key)
    if isinstance(value, bool) or not isinstance(value, _INTS):
        raise TypeError(f"{key} must be an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{key} must be <= {maximum}, got {value}")
    return value


def saved_float(
    state: Any, key: str, *, finite: bool = True, minimum: float | None = None
) -> float:
    """``state[key]`` checked to be a real number (a float; ints accepted, bools refused),
    finite unless ``finite=False``, and not below ``minimum``.

    >>> saved_float({"lr": float("nan")}, "lr")
    Traceback (most recent call last):
    ...
    ValueError: lr must be finite, got nan
    """
    value = saved_value(state, key)
    if isinstance(value, bool) or not isinstance(value, _REALS):
        raise TypeError(f"{key} must be a real number, got {type(value).__name__}")
    value = _to_float(key, value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value}")
    return value


def _shape_text(shape: Any) -> str:
    return "[" + ", ".join("*" if n is None else str(n) for n in shape) + "]"


def saved_tensor(
    state: Any,
    key: str,
    *,
    shape: tuple[int | None, ...] | None = None,
    dtype: torch.dtype | None = None,
    finite: bool = False,
    minimum: float | None = None,
) -> torch.Tensor:
    """``state[key]`` checked to be a dense tensor of ``shape`` and ``dtype``.

    Args:
        state: the saved dict.
        key: the field.
        shape: the expected shape; an int fixes a dimension, ``None`` leaves it free
            (``(None,)``: any 1-D tensor). ``None``: any shape.
        dtype: the expected dtype (exactly: a float32 copy of a float64 record is refused).
        finite: refuse NaN and infinities.
        minimum: refuse values below it (counts, variances).

    Raises:
        ValueError: missing, another shape, non-finite or below ``minimum``, naming ``key``.
        TypeError: not a dense tensor, or another dtype.

    >>> saved_tensor({"grad": torch.zeros(2)}, "grad", shape=(2,), dtype=torch.float32).shape
    torch.Size([2])
    >>> saved_tensor({"grad": torch.zeros(1)}, "grad", shape=(2,))
    Traceback (most recent call last):
    ...
    ValueError: grad must have shape [2], got [1]
    """
    value = saved_value(state, key)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{key} must be a tensor, got {type(value).__name__}")
    if value.layout != torch.strided:
        raise TypeError(f"{key} must be a dense tensor, got a {value.layout} one")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{key} must be a {dtype} tensor, got {value.dtype}")
    if shape is not None and (
        value.dim() != len(shape)
        or any(n is not None and n != m for n, m in zip(shape, value.shape, strict=True))
    ):
        raise ValueError(f"{key} must have shape {_shape_text(shape)}, got {list(value.shape)}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{key} must be finite, got {bad} non-finite value(s)")
    if minimum is not None and value.numel() and bool((value < minimum).any()):
        raise ValueError(f"{key} must be >= {minimum}, got {value.min().item()}")
    return value


def saved_numbers(
    state: Any,
    key: str,
    kind: type = float,
    *,
    length: int | None = None,
    finite: bool = True,
    minimum: float | None = None,
) -> list[Any]:
    """``state[key]`` checked to be a list (or tuple) of real numbers, returned as a list of
    ``kind`` (``int``: integers only; ``float``: any real number, bools refused).

    Args:
        state: the saved dict.
        key: the field.
        kind: ``int`` or ``float``.
        length: the expected length (``None``: any).
        finite: refuse NaN and infinities.
        minimum: refuse values below it.

    Raises:
        ValueError: missing, another length, non-finite or below ``minimum``, naming ``key``.
        TypeError: not a list or tuple of numbers of ``kind``.

    >>> saved_numbers({"steps": [0, 2]}, "steps", int, minimum=0)
    [0, 2]
    >>> saved_numbers({"elbo": [1.0, float("nan")]}, "elbo")
    Traceback (most recent call last):
    ...
    ValueError: elbo[1] must be finite, got nan
    """
    values = saved_value(state, key, (list, tuple))
    if length is not None and len(values) != length:
        raise ValueError(f"{key} must hold {length} value(s), got {len(values)}")
    allowed = _INTS if kind is int else _REALS
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, allowed):
            what = "an int" if kind is int else "a real number"
            raise TypeError(f"{key}[{i}] must be {what}, got {type(v).__name__}")
        v = int(v) if kind is int else _to_float(f"{key}[{i}]", v)
        if finite and not math.isfinite(v):
            raise ValueError(f"{key}[{i}] must be finite, got {v}")
        if minimum is not None and v < minimum:
            raise ValueError(f"{key}[{i}] must be >= {minimum}, got {v}")
        out.append(v)
    return out


def _plain(value: Any) -> Any:
    """Settings as plain JSON-comparable values (tuples as lists, dataclasses as dicts)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


#: Differing settings named in a mismatch message before "... and N more".
SHOWN_SETTINGS = 6


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_settings(saved: Any, now: Any, path: str | Path) -> None:
    """Raise :class:`CheckpointMismatch` naming the settings that differ between a checkpoint
    and the current run (both dataclasses or dicts): the first :data:`SHOWN_SETTINGS`, then how
    many more. Settings that share fewer than half of their names are those of another command:
    the file is called a checkpoint of another kind.

    >>> check_settings({"steps": 3, "lr": 0.1}, {"steps": 4, "lr": 0.1}, "c.pt")
    Traceback (most recent call last):
    ...
    stochgrad.checkpoint.CheckpointMismatch: c.pt: made with other settings (steps: 3 saved, 4 now); rerun with the same options, choose another output folder, or pass --restart to start afresh
    """
    saved, now = _plain(saved), _plain(now)
    if saved == now:
        return
    if isinstance(saved, dict) and isinstance(now, dict):
        shared = set(saved) & set(now)
        if now and 2 * len(shared) < len(now):
            raise CheckpointMismatch(
                f"{path}: a checkpoint of another kind (its settings are "
                f"{summarize_names(sorted(saved, key=str), quote=True)}; this run's "
                f"{summarize_names(sorted(now, key=str), quote=True)}); choose another output "
                "folder, or delete it or pass --restart to start afresh"
            )
        keys = sorted(set(saved) | set(now), key=str)
        diff = [
            f"{k}: {_short(saved.get(k, '(absent)'))} saved, {_short(now.get(k, '(absent)'))} now"
            for k in keys
            if saved.get(k) != now.get(k)
        ]
        more = len(diff) - SHOWN_SETTINGS
        text = "; ".join(diff[:SHOWN_SETTINGS]) + (f"; ... and {more} more" if more > 0 else "")
    else:
        text = f"{_short(saved)} saved, {_short(now)} now"
    raise CheckpointMismatch(
        f"{path}: made with other settings ({text}); rerun with the same options, "
        "choose another output folder, or pass --restart to start afresh"
    )


# ---------------------------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------------------------
class _FileLock:
    """An exclusive advisory lock on a file (``fcntl.flock``); ``blocking=False`` raises
    :class:`OutputBusy` at once when another process holds it.

    The file is removed on release, so no lock files are left behind. A process that opened the
    file just before it was removed would then lock a file that no longer has a name; it checks,
    after locking, that the path still names the file it locked, and tries again if not.
    """

    def __init__(self, path: Path, blocking: bool):
        self.path = path
        self.blocking = blocking
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows: an exclusively created file
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise OutputBusy(str(self.path)) from None
            self._fh = os.fdopen(fd, "w")
            return
        while True:
            fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                flags = fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB)
                fcntl.flock(fh.fileno(), flags)
            except BlockingIOError:
                fh.close()
                raise OutputBusy(str(self.path)) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fh = fh
                return
            fh.close()  # the holder removed the file as we opened it: lock the new one

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # still held: nobody can take the lock on this name meanwhile
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


class OutputLock:
    """Exclusive use of an output folder for the length of a run.

    The lock is a file ``.stochgrad.lock`` in the folder, held with ``fcntl.flock`` and removed
    on release: the operating system drops the lock when the process ends, however it ends, so
    a crashed run never blocks the next one (its empty lock file is reused).

    Args:
        folder: the output folder (created if missing).

    Raises:
        OutputBusy: on entry, when another process holds the lock.

    >>> import tempfile
    >>> with OutputLock(tempfile.mkdtemp()) as folder:
    ...     pass
    """

    NAME = ".stochgrad.lock"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = _FileLock(self.folder / self.NAME, blocking=False)

    def __enter__(self) -> Path:
        try:
            self._lock.acquire()
        except OutputBusy:
            raise OutputBusy(
                f"another stochgrad run is writing to {self.folder}; wait for it to finish "
                "or choose another output folder"
            ) from None
        return self.folder

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of ``path`` between processes (a blocking lock beside it)."""
    lock = _FileLock(path.with_name(f".{path.name}.lock"), blocking=True)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------
# the checkpoint of a study
# ---------------------------------------------------------------------------------------------
Key = tuple[Any, ...]


class RunCheckpoint:
    """Finished runs and mid-run states of one study, in one ``.pt`` file.

    A run is identified by a key tuple of strings and ints (an estimator and a seed, say).
    ``result_type`` (a subclass attribute, or the ``result_type`` argument) is a class with
    ``to_state()`` (a dict of tensors and plain values) and ``from_state(dict)``; when it has
    ``key`` and ``seed`` attributes, :meth:`add` can take the run alone.

    Args:
        path: the ``.pt`` file.
        config: the study's settings (a dataclass or a dict); stored, and compared on load.
        result_type: overrides the class attribute.

    >>> import tempfile, dataclasses
    >>> @dataclasses.dataclass
    ... class Cfg:
    ...     steps: int = 3
    >>> ckpt = RunCheckpoint(tempfile.mkdtemp() + "/c.pt", Cfg())
    >>> ckpt.load()
    0
    """

    result_type: ClassVar[Any] = None

    def __init__(self, path: str | Path, config: Any, result_type: Any = None):
        self.path = Path(path)
        self.config = config
        if result_type is not None:
            self.result_type = result_type
        self.runs: dict[Key, Any] = {}
        self.partial: dict[Key, dict[str, Any]] = {}
        # whether this object has read (or cleared) the file: only then does a save merge what
        # is on disk; a study started afresh without either overwrites a stale file
        self._synced = False

    @staticmethod
    def _entries(stored: Any, path: Path) -> list[tuple[Key, Any]]:
        """``[[key parts], value]`` pairs; files of earlier releases hold ``{"key/seed": value}``."""
        if isinstance(stored, dict):
            out = []
            for name, value in stored.items():
                key, _, seed = str(name).rpartition("/")
                out.append(((key, int(seed)), value))
            return out
        if not isinstance(stored, list):
            raise _refuse(path, "not a stochgrad checkpoint (runs of an unexpected type)")
        return [(tuple(k), v) for k, v in stored]

    def exists(self) -> bool:
        """Whether the file exists."""
        return self.path.is_file()

    def _read(self) -> tuple[dict[Key, Any], dict[Key, dict[str, Any]]]:
        state = load_state(self.path)
        check_settings(field(state, "config", self.path, dict), self.config, self.path)
        try:
            runs = {
                k: self.result_type.from_state(r)
                for k, r in self._entries(field(state, "runs", self.path), self.path)
            }
            partial = dict(self._entries(field(state, "partial", self.path), self.path))
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            # RuntimeError: torch's word for a tensor of the wrong shape or dtype
            raise _refuse(self.path, f"a run could not be read ({_first_line(exc)})") from None
        return runs, partial

    def load(self) -> int:
        """Load ``path`` if it exists; return the number of finished runs.

        Raises:
            CheckpointError: the file is corrupt or foreign.
            CheckpointMismatch: it was made with other settings.
        """
        self._synced = True
        if not self.exists():
            return 0
        runs, partial = self._read()
        self.runs.update(runs)
        self.partial.update(partial)
        return len(self.runs)

    def add(self, run: Any, key: Key | None = None) -> None:
        """Record a finished run (dropping its mid-run state) and save."""
        key = (run.key, run.seed) if key is None else tuple(key)
        self.runs[key] = run
        self.partial.pop(key, None)
        self.save()

    def save_partial(self, *args: Any) -> None:
        """``save_partial(key_tuple, state)`` (or ``save_partial(key, seed, state)``): record a
        run's mid-run state and save."""
        *key, state = args
        key = tuple(key[0]) if len(key) == 1 and isinstance(key[0], tuple) else tuple(key)
        self.partial[key] = state
        self.save()

    def save(self) -> None:
        """Rewrite the file atomically, merged with what another writer saved meanwhile.

        Under a lock beside the file, runs finished by another process sharing the file are
        read back first, so neither writer's finished work is lost.
        """
        with _locked(self.path):
            if self._synced and self.exists():
                with contextlib.suppress(CheckpointError):
                    runs, partial = self._read()
                    for key, run in runs.items():
                        self.runs.setdefault(key, run)
                    for key, part in partial.items():
                        if key not in self.runs:
                            self.partial.setdefault(key, part)
            state = {
                "config": _plain(self.config),
                "runs": [[list(k), r.to_state()] for k, r in self.runs.items()],
                "partial": [[list(k), p] for k, p in self.partial.items()],
            }
            save_state(state, self.path)
            self._synced = True

    def clear(self) -> None:
        """Forget every run and delete the file (``--restart``)."""
        self.runs.clear()
        self.partial.clear()
        self._synced = True
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
