"""Tests of the telegraph parameter-recovery study: summaries replay the fits; resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stochgrad.apps import telegraph as T
from stochgrad.studies.scaffold import cell_generator
from stochgrad.studies.telegraph_recovery import (
    RecoveryCell,
    RecoveryConfig,
    recovery_study,
    telegraph_recovery_study,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64
TINY = RecoveryConfig(
    k_on=(0.3, 2.0), k_off=(1.0, 4.0), k_syn=20.0, num_cells=150, replicates=2, method="exact"
)


def test_recovery_summaries_replay_the_fits() -> None:
    r = recovery_study([0.5], [2.0], k_syn=30.0, num_cells=300, replicates=3, method="exact")
    g = cell_generator(0, 0, 0)  # the study's seed, grid cell (0, 0): the same genes
    x = T.simulate(
        *torch.tensor([[0.5, 2.0, 30.0]] * 3, dtype=D).T, 300, generator=g, method="exact"
    )
    fits = T.fit_counts(x)
    err = np.abs(fits.burst_frequency / 0.5 - 1)
    assert r.bf_error[0, 0] == pytest.approx(np.median(err))
    assert r.bs_ratio[0, 0] == pytest.approx(np.median(fits.bs_ci_ratio))
    assert r.bf_practical[0, 0] == pytest.approx(fits.bf_practical.mean())
    assert r.expressing[0, 0] == pytest.approx(np.median((x > 0).double().mean(1).numpy()))
    ok = ~(fits.bf_structural | fits.bf_practical)
    if ok.any():
        assert r.bf_error_ident[0, 0] == pytest.approx(np.median(err[ok]))
    else:
        assert np.isnan(r.bf_error_ident[0, 0])
    np.testing.assert_array_equal(r.cells[(0, 0)].fits.k_on, fits.k_on)


def test_a_gene_with_no_expressing_cell_counts_as_flagged_with_infinite_error() -> None:
    nan = np.full(2, np.nan)
    fits = T.GeneFits(**{c: nan.copy() for c in T.GeneFits.COLUMNS})
    for c in T.GeneFits.FLAGS:
        setattr(fits, c, np.ones(2, dtype=bool))
    cell = RecoveryCell(0.01, 100.0, 1.0, fits, np.zeros(2))
    assert np.isinf(cell.errors("bf")).all() and np.isinf(cell.errors("bs")).all()
    back = RecoveryCell.from_state(cell.to_state())
    assert back.k_on == 0.01 and back.fits.bf_structural.all()


def test_each_cell_is_checkpointed_and_a_resumed_study_gives_the_same_numbers(tmp_path) -> None:
    full = telegraph_recovery_study(TINY)
    ckpt = tmp_path / "recover.pt"
    seen = []

    def stop(n: int) -> None:
        seen.append(n)
        assert ckpt.exists()  # progress hears of a cell only once it is saved
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        telegraph_recovery_study(TINY, checkpoint=ckpt, progress=stop)
    assert seen == [TINY.replicates]  # units: simulated genes
    found, units = [], []
    resumed = telegraph_recovery_study(
        TINY, checkpoint=ckpt, progress=units.append, on_resume=lambda *a: found.append(a)
    )
    assert found == [(1, 0)] and resumed.resumed == 1
    assert sum(units) == 4 * TINY.replicates
    for name in resumed.ARRAYS:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(full, name))
    with pytest.raises(ValueError, match="other settings.*num_cells"):
        telegraph_recovery_study(
            RecoveryConfig(**{**TINY.__dict__, "num_cells": 100}), checkpoint=ckpt
        )
    fresh = telegraph_recovery_study(TINY, checkpoint=ckpt, resume=False)
    assert fresh.resumed == 0


def test_the_chunk_size_changes_the_numbers_only_by_rounding() -> None:
    # fits batch several genes; the series lengths follow the largest rate of the batch
    cfg = RecoveryConfig(**{**TINY.__dict__, "k_on": (0.3,), "k_off": (1.0,), "replicates": 3})
    serial = telegraph_recovery_study(cfg)
    chunked = telegraph_recovery_study(cfg, chunk_size=1)
    for name in serial.ARRAYS:
        np.testing.assert_allclose(getattr(chunked, name), getattr(serial, name), rtol=1e-9)


def test_verdict_marks_mostly_flagged_cells() -> None:
    r = recovery_study([1.0], [1.0], k_syn=20.0, num_cells=200, replicates=1, method="exact")
    r.bf_structural[0, 0], r.bf_practical[0, 0] = 0.6, 0.2
    assert r.verdict("bf", 0, 0) == "S"
    r.bf_structural[0, 0], r.bf_practical[0, 0] = 0.2, 0.4
    assert r.verdict("bf", 0, 0) == "P"
    r.bf_structural[0, 0], r.bf_practical[0, 0] = 0.2, 0.3
    assert r.verdict("bf", 0, 0) == ""


def test_bad_settings_raise() -> None:
    with pytest.raises(TypeError, match="replicates"):
        recovery_study([1.0], [1.0], replicates=2.5)
    with pytest.raises(ValueError, match="replicates must be >= 1"):
        RecoveryConfig(replicates=0)
    with pytest.raises(ValueError, match="num_cells must be >= 2"):
        RecoveryConfig(num_cells=1)
    with pytest.raises(ValueError, match="k_on must be > 0"):
        RecoveryConfig(k_on=(0.0, 1.0))
    with pytest.raises(ValueError, match="k_off must hold at least one value"):
        RecoveryConfig(k_off=())
    with pytest.raises(ValueError, match="method"):
        RecoveryConfig(method="tau-leap")
    with pytest.raises(ValueError, match="max_ci_ratio"):
        RecoveryConfig(max_ci_ratio=1.0)
    with pytest.raises(ValueError, match="seed"):
        RecoveryConfig(seed=-1)
