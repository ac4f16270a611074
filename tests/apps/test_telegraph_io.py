"""Counts tables as biologists have them: orientation, missing cells, .h5ad, 10x, few cells.

The command line over the same files is tested in ``tests/cli/test_telegraph_fit_inputs.py``.
"""

from __future__ import annotations

import gzip
import math
import warnings

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch

from stochgrad.apps import telegraph as T
from stochgrad.apps.telegraph.chunked import describe_counts
from stochgrad.apps.telegraph.fit import MIN_CELLS, FewCellsWarning, _histograms
from stochgrad.apps.telegraph.io import _label_kind

pytestmark = pytest.mark.usefixtures("one_thread")

GENES = [f"ENSG{i:011d}" for i in range(1, 13)]  # Ensembl ids
CELLS = ["AAACCTGAGAAGGCCT-1", "AAACCTGAGACAGACC-1", "AAACCTGAGATAGTCA-1",
         "AAACCTGAGCGCCTTG-1", "AAACCTGCAGATCTGT-1", "AAACCTGCAGGATTGG-1",
         "AAACCTGCAGGCGATA-1", "AAACCTGCATGAAGTA-1", "AAACCTGGTAGCGCTC-1",
         "AAACCTGGTCTCTTAT-1"]  # fmt: skip
SYMBOLS = ["Actb", "Gapdh", "Mbnl2", "Hdac6", "Igbp1", "Mpp1", "Msl3", "Srf", "Zyx", "Ndrg1",
           "Phgdh", "Snx7"]  # fmt: skip


def _table(G: int = 12, C: int = 10, seed: int = 0) -> np.ndarray:
    return T.simulate_table(G, C, seed, method="exact")[1].numpy()


def _write(path, corner, columns, rows, values, sep=","):
    """A text table: header (corner + column labels, or none), then label + values rows."""
    lines = []
    if columns is not None:
        lines.append(sep.join(([corner] if corner is not None else []) + list(columns)))
    for i, r in enumerate(values):
        cells = ["" if isinstance(v, float) and math.isnan(v) else str(int(v)) for v in r]
        lines.append(sep.join(([rows[i]] if rows is not None else []) + cells))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------ orientation
def test_a_scanpy_export_cells_by_genes_is_read_genes_by_cells(tmp_path) -> None:
    # more genes than cells: the old shape rule took the 10 barcode rows for genes
    x = _table()
    path = _write(tmp_path / "adata.csv", "", GENES, CELLS, x.T)
    counts, names, how = T.read_counts(path)
    assert np.array_equal(counts, x) and names == GENES
    assert how.startswith("genes in columns") and "row labels are cells" in how


def test_an_r_write_csv_genes_by_cells_is_read_as_it_is(tmp_path) -> None:
    x = _table()
    path = _write(tmp_path / "r.csv", "", CELLS, SYMBOLS, x)  # write.csv: empty corner
    counts, names, how = T.read_counts(path)
    assert np.array_equal(counts, x) and names == SYMBOLS
    assert how.startswith("genes in rows") and "column labels are cells" in how
    # write.table leaves the corner out: a header one field shorter than the rows
    path = _write(tmp_path / "r.tsv", None, CELLS, SYMBOLS, x, sep="\t")
    counts, names, _ = T.read_counts(path)
    assert np.array_equal(counts, x) and names == SYMBOLS


@pytest.mark.parametrize(
    ("corner", "rows", "columns", "match"),
    [
        ("", SYMBOLS, [f"S{j}" for j in range(10)], "cannot tell genes from cells"),
        (None, SYMBOLS, None, "row labels names .* column labels absent"),
        ("gene", CELLS + [c[:-1] + "2" for c in CELLS[:2]], SYMBOLS[:10], "disagree"),
        ("", GENES, GENES[:10], "disagree"),  # genes both ways
    ],
    ids=["names-both-ways", "row-labels-only", "corner-vs-barcodes", "genes-both-ways"],
)
def test_an_undecidable_orientation_asks_for_it(tmp_path, corner, rows, columns, match) -> None:
    x = _table()
    path = _write(tmp_path / "c.csv", corner, columns, rows, x)
    with pytest.raises(ValueError, match=match) as err:
        T.read_counts(path)
    assert "--genes-in" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    counts, _, how = T.read_counts(path, genes_in="rows")  # the user's word settles it
    assert np.array_equal(counts, x) and how.startswith("genes in rows (--genes-in rows")


@pytest.mark.parametrize(
    ("labels", "kind"),
    [
        (["ENSG00000243485.5", "ENSMUSG00000051951", "MIR1302-2HG_ENSG00000243485"], "genes"),
        (["FBgn0000008", "WBGene00000001", "gene0", "Gene_12"], "genes"),
        (["sample1_AAACCTGAGAAGGCCT-1", "AAACCTGAGAAGGCCT-1-0", "AAACCTGAGAAGGCCT"], "cells"),
        (["cell0", "Cell_12", "SRR5244567", "GSM2230757"], "cells"),
        (["0", "1", "2"], "numbered"),
        (["Actb", "GATA1", "S1"], "named"),
        (["Actb", "Gapdh", "AAACCTGAGAAGGCCT-1"], "named"),  # 2 in 3 is not 90 %
    ],
)
def test_labels_are_recognised_as_genes_or_cells(labels, kind) -> None:
    assert _label_kind(labels) == kind


def test_genes_in_overrides_the_labels_and_says_so(tmp_path) -> None:
    x = _table()
    path = _write(tmp_path / "c.csv", "", GENES, CELLS, x.T)
    counts, names, how = T.read_counts(path, genes_in="rows")
    assert np.array_equal(counts, x.T) and names == CELLS and "overriding" in how


# ----------------------------------------------------------------------------- missing cells
def _with_missing(x: np.ndarray, seed: int, frac: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = x.astype(float)
    out[rng.random(x.shape) < frac] = np.nan
    return out


def test_a_txburst_table_keeps_empty_fields_as_missing_cells(tmp_path) -> None:
    # txburst's own files: pandas' to_csv, empty corner, cells numbered, empty = missing
    x = _with_missing(_table(4, 150, 3), seed=1)
    genes = [f"expr_0_0_{i}" for i in range(4)]
    path = _write(tmp_path / "txburst.csv", "", [str(j) for j in range(150)], genes, x)
    counts, names, how = T.read_counts(path)
    assert names == genes and "the others only numbers" in how
    np.testing.assert_array_equal(counts, x)  # NaN where the field was empty
    for token in ("NA", "nan", "NaN"):  # R and numpy spell a missing cell so
        path.write_text(path.read_text().replace(",,", f",{token},", 1))
        np.testing.assert_array_equal(T.read_counts(path)[0], x)


def test_fit_with_missing_cells_is_the_fit_of_each_genes_observed_cells() -> None:
    x = _with_missing(_table(4, 300, 5), seed=2)
    fits = T.fit_genes(torch.from_numpy(x))
    for g in range(4):
        seen = x[g][~np.isnan(x[g])]
        alone = T.fit_genes(torch.from_numpy(seen[None]).long())
        for c in ("k_on", "k_off", "k_syn", "bf_low", "bs_high", "log_likelihood"):
            np.testing.assert_allclose(getattr(fits, c)[g], getattr(alone, c)[0], rtol=1e-6)
        # the likelihood is over the observed cells only, replayed with the pmf
        rates = [float(getattr(fits, k)[g]) for k in ("k_on", "k_off", "k_syn")]
        ll = float(T.log_pmf(torch.from_numpy(seen).long(), *rates).sum())
        assert fits.log_likelihood[g] == pytest.approx(ll, rel=1e-10)


def test_histograms_and_moments_leave_missing_cells_out() -> None:
    x = _with_missing(_table(3, 40, 7), seed=3)
    hist = _histograms(torch.from_numpy(x))
    start = T.moment_estimates(torch.from_numpy(x))
    for g in range(3):
        seen = x[g][~np.isnan(x[g])].astype(np.int64)
        expected = np.bincount(seen, minlength=hist.shape[1])
        np.testing.assert_array_equal(hist[g].numpy(), expected)
        alone = T.moment_estimates(torch.from_numpy(seen[None]))[0]
        torch.testing.assert_close(start[g], alone, rtol=1e-12, atol=0)


def test_the_observed_mean_matches_the_closed_form_with_cells_missing() -> None:
    # 30 % of 20000 cells missing at random: the moment start's mean k_syn k_on / (k_on + k_off)
    # is the mean of the observed cells, within 5 standard errors of the model's closed form
    k_on, k_off, k_syn = 0.8, 2.0, 30.0
    g = torch.Generator().manual_seed(11)
    x = T.sample_stationary(torch.tensor([k_on]), k_off, k_syn, 20000, generator=g).numpy()
    x = _with_missing(x, seed=4)
    start = T.moment_estimates(torch.from_numpy(x))[0]
    mean = float(start[2] * start[0] / (start[0] + start[1]))
    seen = x[0][~np.isnan(x[0])]
    se = seen.std(ddof=1) / math.sqrt(seen.size)
    assert abs(mean - k_syn * k_on / (k_on + k_off)) < 5 * se
    # a missing cell read as a zero would pull the mean down by 30 %: far outside
    assert abs(np.nan_to_num(x[0]).mean() - k_syn * k_on / (k_on + k_off)) > 20 * se


def test_nan_and_bad_values_in_fit_genes() -> None:
    x = torch.tensor([[0.0, 3.0, float("nan"), 5.0], [1.0, float("nan"), float("nan"), 0.0]])
    with pytest.warns(FewCellsWarning):
        fits = T.fit_genes(x, ci=False)
    assert np.isfinite(fits.k_on).all()
    with pytest.raises(ValueError, match=r"got 1.5 at gene 1, cell 0"):
        T.fit_genes(torch.tensor([[1.0, 2.0], [1.5, 2.0]]))
    with pytest.raises(ValueError, match=r"got -1 at gene 0, cell 1"):
        T.fit_genes(torch.tensor([[1.0, -1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"got inf at gene 0"):
        T.fit_genes(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match=r"genes \[1\] have fewer than 2 observed cells"):
        T.fit_genes(torch.tensor([[1.0, 2.0, 0.0], [float("nan"), 4.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"genes \[0\] have only zero counts"):
        T.fit_genes(torch.tensor([[0.0, float("nan"), 0.0], [1.0, 4.0, 0.0]]))


# --------------------------------------------------------------------------------- few cells
def test_few_cells_warn_once_naming_the_genes() -> None:
    x = _with_missing(_table(3, 150, 1), seed=5, frac=0.0)
    x[1, :70] = np.nan  # 80 observed cells
    x[2, :140] = np.nan  # 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T.fit_counts(x, ci=False, chunk_size=1, names=["Actb", "Gapdh", "Srf"])
    few = [w for w in caught if issubclass(w.category, FewCellsWarning)]
    assert len(few) == 1, [str(w.message) for w in caught]  # not once more per chunk
    assert few[0].message.genes == ["Gapdh", "Srf"] and few[0].message.min_cells == MIN_CELLS
    assert str(few[0].message).startswith(f"2 of 3 genes have fewer than {MIN_CELLS} observed")
    assert few[0].filename == __file__  # points at the caller
    info = describe_counts(x)
    assert info.few_cells.tolist() == [False, True, True] and info.missing == 210
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough cells: no warning
        T.fit_counts(_table(2, MIN_CELLS, 2), ci=False)


# --------------------------------------------------------------------------- sparse tables
def test_a_sparse_table_fits_as_the_dense_one_and_resumes_its_checkpoint(tmp_path) -> None:
    x = _with_missing(_table(6, 200, 4), seed=6, frac=0.1)
    dense = T.fit_counts(x, ci=False, chunk_size=2, checkpoint=tmp_path / "fit.pt")
    stored = x != 0  # NaN too: a missing cell of a sparse table is an explicit NaN entry
    sp = scipy.sparse.csr_matrix((x[stored], np.nonzero(stored)), shape=x.shape)
    found = []
    resumed = T.fit_counts(
        sp, ci=False, chunk_size=2, checkpoint=tmp_path / "fit.pt",
        on_resume=lambda *a: found.append(a),
    )  # fmt: skip
    assert found == [(3, 3)]  # the same data: the dense run's checkpoint is taken
    fresh = T.fit_counts(sp, ci=False, chunk_size=2)
    for c in T.GeneFits.COLUMNS:
        np.testing.assert_array_equal(getattr(resumed, c), getattr(dense, c))
        np.testing.assert_array_equal(getattr(fresh, c), getattr(dense, c))
    with pytest.raises(ValueError, match=r"got 0.5 at gene 1, cell 3"):
        T.fit_counts(scipy.sparse.csr_matrix(([0.5], ([1], [3])), shape=(2, 5)))


# ---------------------------------------------------------------------------------- AnnData
def _h5ad(path, x: np.ndarray, obs=CELLS, var=GENES, **layers):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    X = np.log1p(x.T.astype(np.float32))  # normalised values in X, as after scanpy
    ad = anndata.AnnData(
        X=X, obs=pd.DataFrame(index=list(obs)), var=pd.DataFrame(index=list(var)), layers=layers
    )
    ad.write_h5ad(path)
    return path


def test_an_h5ad_layer_is_read_genes_by_cells(tmp_path) -> None:
    x = _table()
    path = _h5ad(tmp_path / "a.h5ad", x, counts=scipy.sparse.csr_matrix(x.T))
    counts, names, how = T.read_counts(path, layer="counts")
    assert scipy.sparse.issparse(counts) and np.array_equal(counts.toarray(), x)
    assert names == GENES and how.startswith("genes in columns (AnnData layer 'counts'")
    with pytest.raises(ValueError, match=r"not raw counts\? choose them with a layer \(counts\)"):
        T.read_counts(path)  # X holds log1p values
    with pytest.raises(ValueError, match=r"no layer 'raw'; its layers: counts"):
        T.read_counts(path, layer="raw")
    with pytest.raises(ValueError, match="layer applies to .h5ad files only"):
        T.read_counts(_write(tmp_path / "c.csv", "gene", CELLS, GENES, x), layer="counts")


def test_a_transposed_h5ad_is_refused_unless_told(tmp_path) -> None:
    x = _table()
    # genes stored as obs: X is genes x cells
    path = _h5ad(tmp_path / "t.h5ad", x.T, obs=GENES, var=CELLS, counts=x.astype(np.int64))
    with pytest.raises(ValueError, match="obs_names look like genes .*--genes-in rows"):
        T.read_counts(path, layer="counts")
    counts, names, _ = T.read_counts(path, genes_in="rows", layer="counts")
    assert np.array_equal(counts, x) and names == GENES


def test_h5ad_without_anndata_names_the_extra(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "anndata", None)
    with pytest.raises(ImportError, match=r'pip install "stochgrad\[bio\]"'):
        T.read_counts(tmp_path / "a.h5ad")


# --------------------------------------------------------------------------------------- 10x
def _tenx(folder, x: np.ndarray, features=None, barcodes=CELLS, old=False):
    folder.mkdir(exist_ok=True)
    features = features or [(g, s, "Gene Expression") for g, s in zip(GENES, SYMBOLS, strict=True)]
    suffix = "" if old else ".gz"
    opener = open if old else gzip.open
    with opener(folder / f"matrix.mtx{suffix}", "wb") as fh:
        scipy.io.mmwrite(fh, scipy.sparse.coo_matrix(x.astype(np.int64)), field="integer")
    name = "genes.tsv" if old else "features.tsv.gz"
    with opener(folder / name, "wt") as fh:
        fh.write("".join("\t".join(f[:2] if old else f) + "\n" for f in features))
    with opener(folder / f"barcodes.tsv{suffix}", "wt") as fh:
        fh.write("".join(b + "\n" for b in barcodes))
    return folder


def test_a_10x_folder_keeps_gene_expression_features(tmp_path) -> None:
    x = _table(13, 10)
    feats = [(g, s, "Gene Expression") for g, s in zip(GENES, SYMBOLS, strict=True)]
    feats.insert(4, ("CD3_TotalSeqB", "CD3", "Antibody Capture"))
    folder = _tenx(tmp_path / "filtered_feature_bc_matrix", x, features=feats)
    counts, names, how = T.read_counts(folder)
    assert np.array_equal(counts.toarray(), np.delete(x, 4, axis=0)) and names == GENES
    assert "1 features other than Gene Expression left out" in how
    counts, _, _ = T.read_counts(folder / "matrix.mtx.gz")  # the matrix file itself
    assert counts.shape == (12, 10)
    old = _tenx(tmp_path / "v2", x[:12], old=True)  # Cell Ranger 2: genes.tsv, uncompressed
    counts, names, _ = T.read_counts(old)
    assert np.array_equal(counts.toarray(), x[:12]) and names == GENES


def test_mismatched_or_incomplete_10x_folders_are_refused(tmp_path) -> None:
    x = _table()
    folder = _tenx(tmp_path / "m", x, barcodes=CELLS[:9])
    with pytest.raises(ValueError, match=r"do not match: matrix.mtx.gz is 12 x 10, .* 9 barcodes"):
        T.read_counts(folder)
    (folder / "barcodes.tsv.gz").unlink()
    with pytest.raises(ValueError, match=r"not a 10x matrix folder, missing barcodes.tsv"):
        T.read_counts(folder)
    with pytest.raises(ValueError, match="features in rows by its format"):
        T.read_counts(_tenx(tmp_path / "ok", x), genes_in="columns")


# ------------------------------------------------------------------------------ text formats
def test_tsv_gzip_and_sniffed_text_read_alike(tmp_path) -> None:
    x = _table()
    ref, _, _ = T.read_counts(_write(tmp_path / "a.csv", "gene", CELLS, GENES, x))
    for name, sep in (("b.tsv.gz", "\t"), ("c.txt", "\t"), ("d.txt.gz", ";"), ("e", ",")):
        counts, names, _ = T.read_counts(_write(tmp_path / name, "gene", CELLS, GENES, x, sep))
        assert np.array_equal(counts, ref) and names == GENES, name


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("c.xlsx", b"PK\x03\x04", r"unknown file type '.xlsx'"),
        ("c.loom", b"\x89HDF", r"unknown file type '.loom'"),
        ("c.csv.gz", b"not gzip at all", "not a readable CSV file"),
        ("c.h5ad", b"plain text", "not an .h5ad"),
    ],
)
def test_unknown_or_broken_files_are_refused(tmp_path, name, content, match) -> None:
    if name.endswith(".h5ad"):
        pytest.importorskip("anndata")
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        T.read_counts(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
