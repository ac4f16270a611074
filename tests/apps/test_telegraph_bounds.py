"""Bounds of the telegraph fit: counts too large to fit, iteration limits, chunks by default."""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch

from stochgrad.apps import telegraph as T
from stochgrad.apps.telegraph.chunked import auto_chunk_size


def _table(top: float) -> np.ndarray:
    x = np.random.default_rng(0).poisson(5, size=(3, 40)).astype(float)
    x[1, 7] = top
    return x


@pytest.mark.parametrize("top", [1e6, 1e7, 1e12, 99999999999999999999999.0])
@pytest.mark.parametrize("form", ["dense", "nan", "sparse", "tensor"])
def test_a_count_above_max_count_is_refused_at_once_naming_gene_and_cell(top, form):
    # before: a count of 1e6 in a 40-cell table ran for minutes in 7 GB, 1e12 tried to
    # allocate 8 TB, and 1e23 was reported as "a negative value" (int64 overflow)
    x = _table(top)
    if form == "nan":
        x[2, 3] = np.nan
    counts = {"dense": x, "nan": x, "sparse": scipy.sparse.csr_matrix(x)}.get(form)
    if form == "tensor":
        counts = torch.from_numpy(x)
    t0 = time.perf_counter()
    for fit in (T.fit_counts, T.fit_genes):
        if fit is T.fit_genes and form == "sparse":
            continue
        with pytest.raises(
            ValueError, match=r"counts \(gene 1, cell 7\) must be at most MAX_COUNT"
        ):
            fit(counts)
    assert time.perf_counter() - t0 < 5.0


def test_the_likelihood_functions_refuse_counts_above_max_count_without_allocating():
    one = torch.tensor([1.0])
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="n must be at most MAX_COUNT"):
        T.log_pmf(10**9, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="n must be at most MAX_COUNT"):
        T.log_pmf([3, 10**30], 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="n_max must be at most MAX_COUNT"):
        T.log_pmf_table(one, one, one, 10**9)
    h = torch.zeros(1, T.MAX_COUNT + 2, dtype=torch.float64)
    h[0, -1] = 1.0
    with pytest.raises(ValueError, match="largest count must be at most MAX_COUNT"):
        T.histogram_nll(one, one, one, h)
    with pytest.raises(TypeError, match="n must hold non-negative integers"):
        T.log_pmf("abc", 1.0, 1.0, 1.0)
    assert time.perf_counter() - t0 < 2.0


def test_a_wide_histogram_with_nothing_above_max_count_gives_the_narrow_ones_value():
    one = torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([40.0])
    h = torch.zeros(1, T.MAX_COUNT + 50, dtype=torch.float64)
    h[0, [0, 3, 50]] = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    wide = T.histogram_nll(*one, h, order=0)[0]
    narrow = T.histogram_nll(*one, h[:, :51], order=0)[0]
    ref = -(h[:, :51] * T.log_pmf_table(*one, 50)).sum(1)
    assert torch.equal(wide, narrow)
    torch.testing.assert_close(wide, ref, rtol=1e-12, atol=0)


def test_the_largest_allowed_count_is_fitted_in_bounded_time():
    # a count of MAX_COUNT in a Poisson gene: one likelihood evaluation of order 0 in seconds
    one = torch.tensor([1e3]), torch.tensor([1e-3]), torch.tensor([1e4])
    t0 = time.perf_counter()
    val = T.log_pmf([T.MAX_COUNT], *one)
    assert time.perf_counter() - t0 < 30.0
    # Poisson(1e5; ~1e4) in closed form: far below anything a fit could prefer
    assert float(val[0]) < -1e5


def test_max_iter_below_one_and_a_non_bool_ci_are_refused():
    # before: fit_genes(max_iter=0) was accepted and `converged` came back empty
    x = np.random.default_rng(1).poisson(3, size=(2, 30))
    for fit in (T.fit_genes, T.fit_counts):
        with pytest.raises(ValueError, match="max_iter"):
            fit(x, max_iter=0)
        with pytest.raises(TypeError, match="ci must be a bool"):
            fit(x, ci="yes")


def test_converged_is_carried_through_fit_counts_in_gene_order():
    g = torch.Generator().manual_seed(3)
    rates = torch.tensor([0.5, 2.0]), torch.tensor([2.0, 1.0]), torch.tensor([30.0, 10.0])
    x = T.sample_stationary(*rates, 300, generator=g)
    x = torch.cat((x, torch.zeros(1, 300, dtype=x.dtype)))  # an unexpressed gene: not fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.FewCellsWarning)
        direct = T.fit_genes(x[:2], ci=False)
        chunked = T.fit_counts(x, ci=False, chunk_size=1)
    assert chunked.converged.dtype == bool and chunked.converged.shape == (3,)
    assert chunked.converged[:2].tolist() == direct.converged.tolist()
    assert not chunked.converged[2]


def test_states_saved_before_converged_was_kept_still_load():
    fits = T.GeneFits.from_state({c: np.ones(2) for c in T.GeneFits.COLUMNS if c != "converged"})
    assert fits.converged.tolist() == [False, False]


def test_the_default_chunk_size_gives_every_worker_work():
    assert auto_chunk_size(10_000, "process", 2) == T.CHUNK_SIZE
    assert auto_chunk_size(100, "process", 2) == 50
    assert auto_chunk_size(100, "serial", 8) == 100
    assert auto_chunk_size(0, "process", 2) == 1


def test_a_rows_likelihood_does_not_depend_on_the_rows_beside_it():
    # torch sums over a first dimension and bmm round differently with the batch's width:
    # each row's value, gradient and Hessian must be the same bits alone and in any batch
    _, x = T.simulate_table(40, 200, seed=5, method="exact")
    x = x[x.sum(1) > 0]
    h = torch.stack([torch.bincount(r, minlength=int(x.max()) + 1) for r in x]).double()
    g = torch.Generator().manual_seed(0)
    a, b, k = (torch.rand(len(x), generator=g, dtype=torch.float64) * s + 0.1 for s in (3, 3, 80))
    f, gr, H = T.histogram_nll(a, b, k, h)
    for i in range(len(x)):
        top = int(torch.nonzero(h[i]).max())
        fi, gi, Hi = T.histogram_nll(
            a[i : i + 1], b[i : i + 1], k[i : i + 1], h[i : i + 1, : top + 1]
        )
        assert torch.equal(fi[0], f[i]) and torch.equal(gi[0], gr[i]) and torch.equal(Hi[0], H[i])


def test_fit_counts_gives_the_same_bits_whatever_the_chunk_size():
    # before: `telegraph fit` results changed with --chunk-size (k_syn 6439.65 vs 6439.94)
    _, x = T.simulate_table(60, 200, seed=5, method="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.FewCellsWarning)
        fits = [T.fit_counts(x, chunk_size=c) for c in (1, 7, 60)]
    for other in fits[1:]:
        for c in T.GeneFits.COLUMNS:
            np.testing.assert_array_equal(getattr(other, c), getattr(fits[0], c), err_msg=c)


def test_the_cli_names_the_gene_of_a_count_too_large_in_one_line(tmp_path, capsys):
    from stochgrad.cli import main
    from tests.helpers import one_error_line

    table = tmp_path / "counts.csv"
    table.write_text("gene,c1,c2,c3\ng1,1,2,3000000\ng2,0,1,2\n")
    t0 = time.perf_counter()
    assert main(["telegraph", "fit", str(table), "--out", str(tmp_path / "out")]) == 2
    assert time.perf_counter() - t0 < 10.0
    line = one_error_line(capsys)
    assert "gene 'g1', row 0, cell 2" in line and "MAX_COUNT" in line


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda g: T.simulate(1.0, 1.0, 1e300, 5, generator=g), ValueError, "k_syn must be at most MAX_RATE"),
        (lambda g: T.simulate(1.0, 1.0, 10.0, 5, generator=g, t_end=1e300), ValueError, "MAX_EVENTS"),
        (lambda g: T.sample_stationary(1.0, 1.0, 10.0, 10**30, generator=g), ValueError, "num_cells=1,000"),
        (lambda g: T.sample_stationary(1.0, 1.0, 10.0, 5, generator=None), TypeError, "generator must be a torch.Generator"),
        (lambda g: T.fisher_gradient(3, 1.0, 1.0, 10.0, num_samples=10**30, generator=g), ValueError, "num_samples=1,000"),
        (lambda g: T.log_pmf([1], None, 1.0, 1.0), TypeError, "k_on must be a positive number"),
        (lambda g: T.log_pmf(torch.ones(2, device="meta").long(), 1.0, 1.0, 1.0), ValueError, "n must hold values"),
        (lambda g: T.fit_genes(None), TypeError, "counts must be a [genes, cells] table"),
        (lambda g: T.fit_genes(np.ones((2, 30)), max_ci_ratio=float("inf")), ValueError, "max_ci_ratio must be a finite"),
        (lambda g: T.fit_counts(np.ones((2, 30)), names=[1, 2]), TypeError, "names must be a sequence of gene names"),
        (lambda g: T.fit_counts(np.ones((2, 30)), num_workers=10**30), ValueError, "num_workers"),
        (lambda g: T.histogram_nll(*(torch.ones(1),) * 3, torch.ones(1, 3), order=False), ValueError, "order must be"),
    ],
    ids=["rate", "events", "cells-memory", "no-generator", "draws-memory", "none-rate", "meta",
         "no-counts", "inf-ratio", "int-names", "workers", "bool-order"],
)  # fmt: skip
def test_careless_telegraph_input_is_refused_naming_the_argument(call, error, says):
    # before: hangs (a rate of 1e300, t_end=1e300), raw OverflowError / RuntimeError, or
    # accepted (generator=None drew from the global stream; infinite ratios; int names)
    t0 = time.perf_counter()
    with pytest.raises(error, match=re.escape(says)):
        call(torch.Generator().manual_seed(0))
    assert time.perf_counter() - t0 < 5.0
