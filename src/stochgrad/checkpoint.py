"""Saving and loading work in progress: atomic, locked, and never unpickling a user's file.

Everything a study or a trainer writes goes through this module:

- :func:`atomic_write` (and :func:`save_state`, :func:`save_json`, :func:`write_text`) write a
  temporary file with a unique name beside the target, flush it to disk and rename it over the
  target, so a reader sees the old file or the new one, never half of one, and two writers never
  share a temporary file.
- :func:`load_state` reads ``.pt`` files with ``torch.load(weights_only=True)`` (tensors and plain
  containers only: a planted file cannot run code) and :func:`load_json` reads JSON; a missing
  field, a corrupt, truncated, empty or foreign file raises :class:`CheckpointError` with one line
  that names the file, what is wrong and how to start afresh.
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
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import torch

try:  # POSIX advisory locks; elsewhere an exclusively created lock file stands in
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CheckpointError",
    "CheckpointMismatch",
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


def save_state(state: Any, path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` atomically.

    ``state`` should hold only tensors, numbers, strings, ``None`` and lists/tuples/dicts of
    them: what :func:`load_state` accepts back (``weights_only=True``).
    """
    atomic_write(path, lambda fh: torch.save(state, fh))


def _refuse(path: Path, what: str, hint: str = RESTART_HINT) -> CheckpointError:
    return CheckpointError(f"{path}: {what}; {hint}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def load_state(
    path: str | Path, *, map_location: str | torch.device = "cpu", hint: str = RESTART_HINT
) -> Any:
    """Read a ``.pt`` file written by :func:`save_state`, never unpickling arbitrary objects.

    Args:
        path: the file.
        map_location: where tensors are put (default the CPU: a GPU-made file loads anywhere).
        hint: what the error message tells the user to do about a bad file.

    Raises:
        CheckpointError: missing, empty, truncated, corrupt or foreign (holding objects other
            than tensors and plain containers, as a planted pickle would).
    """
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file", hint="check the path")
    if path.stat().st_size == 0:
        raise _refuse(path, "the file is empty", hint)
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: refused below
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds: zip, EOF, unpickling, index errors
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            what = "not a stochgrad file (it holds Python objects that are not loaded, for safety)"
        elif isinstance(exc, EOFError) or "central directory" in text or "truncated" in text:
            what = "truncated or not a PyTorch file"
        else:
            what = f"unreadable ({type(exc).__name__}: {_first_line(exc)})"
        raise _refuse(path, what, hint) from None


def load_json(path: str | Path, *, hint: str = RESTART_HINT) -> Any:
    """Read a JSON file; a missing, empty, undecodable or invalid file raises one clear line."""
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file", hint="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _refuse(path, "not UTF-8 text", hint) from None
    if not text.strip():
        raise _refuse(path, "the file is empty", hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(path, f"not valid JSON ({exc.msg} at line {exc.lineno})", hint) from None


def field(state: Any, key: str, path: str | Path, kind: type | tuple[type, ...] = object) -> Any:
    """``state[key]``, or a :class:`CheckpointError` naming the file when it is missing or of
    another type (a file from another program or version)."""
    if not isinstance(state, dict) or key not in state:
        raise _refuse(Path(path), f"not a stochgrad checkpoint (no {key!r} field)")
    value = state[key]
    if not isinstance(value, kind):
        raise _refuse(Path(path), f"field {key!r} has an unexpected type {type(value).__name__}")
    return value


def _plain(value: Any) -> Any:
    """Settings as plain JSON-comparable values (tuples as lists, dataclasses as dicts)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


def check_settings(saved: Any, now: Any, path: str | Path) -> None:
    """Raise :class:`CheckpointMismatch` naming each setting that differs between a checkpoint
    and the current run (both dataclasses or dicts)."""
    saved, now = _plain(saved), _plain(now)
    if saved == now:
        return
    if isinstance(saved, dict) and isinstance(now, dict):
        keys = sorted(set(saved) | set(now))
        diff = ", ".join(
            f"{k}: {saved.get(k, '(absent)')!r} saved, {now.get(k, '(absent)')!r} now"
            for k in keys
            if saved.get(k) != now.get(k)
        )
    else:
        diff = f"{saved!r} saved, {now!r} now"
    raise CheckpointMismatch(
        f"{path}: made with other settings ({diff}); rerun with the same options, "
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
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
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
