"""Checkpoints: atomic writes, files refused with one clear line, locks, two writers."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import pickle
import zipfile

import pytest
import torch

from stochgrad.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    OutputBusy,
    OutputLock,
    RunCheckpoint,
    atomic_write,
    check_settings,
    load_json,
    load_state,
    save_json,
    save_state,
)


@dataclasses.dataclass
class Cfg:
    steps: int = 3
    lr: float = 0.1


@dataclasses.dataclass
class Run:
    key: str
    seed: int
    value: float

    def to_state(self):
        return {"key": self.key, "seed": self.seed, "value": torch.tensor(self.value)}

    @classmethod
    def from_state(cls, s):
        return cls(s["key"], int(s["seed"]), float(s["value"]))


class Planted:
    """A pickle whose loading would create a marker file (a harmless stand-in for code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    save_json({"x": 1}, path)
    assert load_json(path) == {"x": 1}
    with pytest.raises(RuntimeError):

        def fail(fh):
            fh.write(b"half")
            raise RuntimeError("disk full")

        atomic_write(path, fail)
    assert load_json(path) == {"x": 1}  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def test_save_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        save_json({"x": float("nan")}, tmp_path / "a.json")


def test_state_round_trip(tmp_path):
    state = {"w": torch.arange(3.0), "n": 2, "names": ["a", "b"], "nested": {"t": (1, 2)}}
    save_state(state, tmp_path / "s.pt")
    back = load_state(tmp_path / "s.pt")
    assert torch.equal(back["w"], state["w"]) and back["names"] == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# bad files: one line naming the file, what is wrong, and how to start afresh
# ---------------------------------------------------------------------------------------------
def _bad_pt_files(tmp_path):
    good = tmp_path / "good.pt"
    save_state({"w": torch.randn(100)}, good)
    data = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random bytes": os.urandom(300),
        "json text": b'{"a": 1}',
        "foreign zip": _zip_bytes(tmp_path),
    }
    paths = {}
    for name, content in files.items():
        p = tmp_path / f"{name.replace(' ', '_')}.pt"
        p.write_bytes(content)
        paths[name] = p
    return paths


def _zip_bytes(tmp_path) -> bytes:
    z = tmp_path / "z.zip"
    with zipfile.ZipFile(z, "w") as fh:
        fh.writestr("hello.txt", "hi")
    return z.read_bytes()


def test_corrupt_state_files_are_refused_with_one_line(tmp_path):
    for what, path in _bad_pt_files(tmp_path).items():
        with pytest.raises(CheckpointError) as exc:
            load_state(path)
        msg = str(exc.value)
        assert "\n" not in msg, what
        assert str(path) in msg and "--restart" in msg, (what, msg)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_state(tmp_path / "nope.pt")


def test_planted_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    for name, blob in {
        "plain.pt": pickle.dumps(Planted(marker)),
        "torch.pt": None,
    }.items():
        path = tmp_path / name
        if blob is None:
            torch.save({"state": Planted(marker)}, path)  # a zip archive holding the payload
        else:
            path.write_bytes(blob)
        with pytest.raises(CheckpointError) as exc:
            load_state(path)
        assert str(path) in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"", "empty"), (b"{not json", "not valid JSON"), (b"\xff\xfe\x00", "not UTF-8")],
)
def test_bad_json_files(tmp_path, content, what):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=what):
        load_json(path)


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------
def test_check_settings_names_what_differs(tmp_path):
    check_settings(Cfg(), {"steps": 3, "lr": 0.1}, tmp_path)
    with pytest.raises(CheckpointMismatch) as exc:
        check_settings(Cfg(steps=3), Cfg(steps=4), tmp_path / "c.pt")
    msg = str(exc.value)
    assert "steps: 3 saved, 4 now" in msg and "lr" not in msg and "--restart" in msg


def test_run_checkpoint_round_trip_and_mismatch(tmp_path):
    path = tmp_path / "c.pt"
    ckpt = RunCheckpoint(path, Cfg(), Run)
    ckpt.load()
    ckpt.add(Run("score", 0, 1.5))
    ckpt.save_partial(("score", 1), {"step": 2})
    again = RunCheckpoint(path, Cfg(), Run)
    assert again.load() == 1
    assert again.runs[("score", 0)].value == 1.5 and again.partial[("score", 1)] == {"step": 2}
    with pytest.raises(CheckpointMismatch, match="lr"):
        RunCheckpoint(path, Cfg(lr=0.2), Run).load()


def test_run_checkpoint_reads_the_earlier_key_format(tmp_path):
    path = tmp_path / "old.pt"
    run = Run("loo", 4, 2.0)
    torch.save({"config": dataclasses.asdict(Cfg()), "runs": {"loo/4": run.to_state()},
                "partial": {}}, path)  # fmt: skip
    ckpt = RunCheckpoint(path, Cfg(), Run)
    assert ckpt.load() == 1 and ckpt.runs[("loo", 4)] == run


def test_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_state({"weights": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a stochgrad checkpoint"):
        RunCheckpoint(path, Cfg(), Run).load()


def test_restart_without_loading_overwrites_a_stale_file(tmp_path):
    path = tmp_path / "c.pt"
    old = RunCheckpoint(path, Cfg(), Run)
    old.add(Run("a", 0, 1.0))
    fresh = RunCheckpoint(path, Cfg(), Run)  # not loaded: a study started afresh
    fresh.add(Run("b", 0, 2.0))
    back = RunCheckpoint(path, Cfg(), Run)
    back.load()
    assert set(back.runs) == {("b", 0)}


# ---------------------------------------------------------------------------------------------
# two writers, one file; one output folder, two runs
# ---------------------------------------------------------------------------------------------
def _writer(path: str, key: str, n: int, start, errors) -> None:
    start.wait()
    ckpt = RunCheckpoint(path, Cfg(), Run)
    ckpt.load()
    for seed in range(n):
        try:
            ckpt.add(Run(key, seed, float(seed)))
        except Exception as exc:  # pragma: no cover - the failure this test guards against
            errors.put(repr(exc))


def test_two_processes_saving_one_checkpoint_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.pt")
    ctx = mp.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    n = 150
    procs = [ctx.Process(target=_writer, args=(path, k, n, start, errors)) for k in ("a", "b")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert errors.empty()
    final = RunCheckpoint(path, Cfg(), Run)
    assert final.load() == 2 * n  # every finished run of both writers is kept
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_a_second_run_on_one_output_folder_gets_a_clear_error(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(OutputBusy, match="another stochgrad run is writing to"):
            with OutputLock(tmp_path):
                pass
    with OutputLock(tmp_path):  # released: usable again
        pass


def test_locks_leave_no_files_behind(tmp_path):
    with OutputLock(tmp_path):
        assert (tmp_path / OutputLock.NAME).exists()
    ckpt = RunCheckpoint(tmp_path / "c.pt", Cfg(), Run)
    ckpt.add(Run("a", 0, 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
