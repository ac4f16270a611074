"""``stochgrad telegraph fit`` on biologists' own matrices: mis-oriented exports, .h5ad, 10x,
txburst tables with missing cells, the few-cells warning, the summary and the plot.

The reader itself is tested in ``tests/apps/test_telegraph_io.py``.
"""

from __future__ import annotations

import csv
import gzip
import json
import math

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch

from stochgrad.apps import telegraph as T
from stochgrad.cli import main
from tests.helpers import one_error_line, unwrapped, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

FIT = ["--backend", "serial", "--no-ci"]
GENES = [f"ENSG{i:011d}" for i in range(1, 13)]
CELLS = [f"{b}-1" for b in ("AAACCTGAGAAGGCCT", "AAACCTGAGACAGACC", "AAACCTGAGATAGTCA",
         "AAACCTGAGCGCCTTG", "AAACCTGCAGATCTGT", "AAACCTGCAGGATTGG", "AAACCTGCAGGCGATA",
         "AAACCTGCATGAAGTA", "AAACCTGGTAGCGCTC", "AAACCTGGTCTCTTAT")]  # fmt: skip
SYMBOLS = ["Actb", "Gapdh", "Mbnl2", "Hdac6", "Igbp1", "Mpp1", "Msl3", "Srf", "Zyx", "Ndrg1",
           "Phgdh", "Snx7"]  # fmt: skip


def _write(path, corner, columns, rows, values):
    lines = [",".join(([corner] if corner is not None else []) + list(columns))]
    for label, r in zip(rows, values, strict=True):
        cells = ["" if isinstance(v, float) and math.isnan(v) else str(int(v)) for v in r]
        lines.append(",".join([label, *cells]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(counts, out, *extra) -> str:
    """Run the command; its kinetics.csv text."""
    assert main(["telegraph", "fit", str(counts), "--out", str(out), *FIT, *extra]) == 0
    return (out / "kinetics.csv").read_text()


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    """12 genes x 10 cells: more genes than cells, as in every real export."""
    return T.simulate_table(12, 10, 0, method="exact")[1].numpy()


@pytest.fixture
def reference(tmp_path, table, capsys) -> str:
    """kinetics.csv of the correctly oriented table (genes x cells, a ``gene`` corner)."""
    text = _fit(_write(tmp_path / "ref.csv", "gene", CELLS, GENES, table), tmp_path / "ref")
    capsys.readouterr()
    return text


# ------------------------------------------------------------------- the two mis-read exports
def test_a_scanpy_export_is_fitted_the_right_way_round(tmp_path, table, reference, capsys):
    path = _write(tmp_path / "scanpy.csv", "", GENES, CELLS, table.T)  # cells x genes
    assert _fit(path, tmp_path / "o") == reference
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped("12 genes x 10 cells: genes in columns (row labels are cells") in text


def test_an_r_export_is_fitted_the_right_way_round(tmp_path, table, capsys):
    ref = _fit(_write(tmp_path / "ref.csv", "gene", CELLS, SYMBOLS, table), tmp_path / "ref")
    path = _write(tmp_path / "r.csv", "", CELLS, SYMBOLS, table)  # write.csv: empty corner
    assert _fit(path, tmp_path / "o") == ref
    assert unwrapped("genes in rows (column labels are cells") in unwrapped(capsys.readouterr().out)


def test_an_undecidable_export_asks_for_the_orientation(tmp_path, table, capsys):
    samples = [f"S{j}" for j in range(10)]
    path = _write(tmp_path / "c.csv", "", samples, SYMBOLS, table)
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o"), *FIT]) == 2
    line = one_error_line(capsys)
    assert "cannot tell genes from cells" in line and "--genes-in" in line
    assert not (tmp_path / "o").exists()
    ref = _fit(_write(tmp_path / "ref.csv", "gene", samples, SYMBOLS, table), tmp_path / "ref")
    assert _fit(path, tmp_path / "told", "--genes-in", "rows") == ref


# ----------------------------------------------------------------------------- .h5ad and 10x
def test_an_h5ad_counts_layer_fits_as_its_csv(tmp_path, table, reference, capsys):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    ad = anndata.AnnData(
        X=np.log1p(table.T).astype(np.float32),  # normalised X, raw counts in a layer
        obs=pd.DataFrame(index=CELLS),
        var=pd.DataFrame(index=GENES),
        layers={"counts": scipy.sparse.csr_matrix(table.T.astype(np.float32))},
    )
    path = tmp_path / "pbmc.h5ad"
    ad.write_h5ad(path)
    assert _fit(path, tmp_path / "o", "--layer", "counts") == reference
    assert "AnnData layer 'counts'" in capsys.readouterr().out
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "x"), *FIT]) == 2
    assert "not raw counts? choose them with a layer (counts)" in one_error_line(capsys)
    assert (
        main(["telegraph", "fit", str(path), "--out", str(tmp_path / "y"), "--layer", "raw"]) == 2
    )
    assert "no layer 'raw'; its layers: counts" in one_error_line(capsys)


def _tenx(folder, x, barcodes=CELLS):
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, scipy.sparse.coo_matrix(x.astype(np.int64)), field="integer")
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"{g}\t{s}\tGene Expression\n" for g, s in zip(GENES, SYMBOLS, strict=True))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(b + "\n" for b in barcodes)
    return folder


def test_a_10x_folder_fits_as_its_csv(tmp_path, table, reference, capsys):
    assert _fit(_tenx(tmp_path / "filtered", table), tmp_path / "o") == reference
    assert "10x matrix: features x barcodes" in capsys.readouterr().out
    bad = _tenx(tmp_path / "bad", table, barcodes=CELLS[:7])
    assert main(["telegraph", "fit", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "do not match: matrix.mtx.gz is 12 x 10" in one_error_line(capsys)


# ---------------------------------------------------------------------------- missing cells
def test_a_txburst_table_with_empty_fields_fits_each_genes_observed_cells(tmp_path, capsys):
    x = T.simulate_table(3, 160, 2, method="exact")[1].numpy().astype(float)
    x[np.random.default_rng(0).random(x.shape) < 0.25] = np.nan
    genes = [f"expr_{i}" for i in range(3)]
    path = _write(tmp_path / "umis.csv", "", [str(j) for j in range(160)], genes, x)
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o"), *FIT]) == 0
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped(f"{int(np.isnan(x).sum())} missing cells (empty fields or NaN)") in text
    rows = list(csv.DictReader((tmp_path / "o" / "kinetics.csv").read_text().splitlines()))
    for g in range(3):
        seen = torch.from_numpy(x[g][~np.isnan(x[g])]).long()[None]
        alone = T.fit_genes(seen, ci=False)
        for c in ("k_on", "k_off", "k_syn", "log_likelihood"):
            assert float(rows[g][c]) == pytest.approx(float(getattr(alone, c)[0]), rel=1e-5)


def test_genes_with_few_cells_get_one_warning_line(tmp_path, capsys):
    x = T.simulate_table(3, 150, 4, method="exact")[1].numpy().astype(float)
    x[0, :100] = np.nan  # 50 observed cells
    x[2, :60] = np.nan  # 90
    path = _write(tmp_path / "c.csv", "gene", [f"cell{j}" for j in range(150)], SYMBOLS[:3], x)
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o"), *FIT]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert lines == [
        "warning: 2 genes have fewer than 100 observed cells, too few for a 10 % estimate "
        "(Actb, Mbnl2)"
    ]
    assert widest_line(out) <= 100
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["genes_under_min_cells"] == 2 and summary["missing_cells"] == 160


# ----------------------------------------------------------------------- summary and plot
def test_summary_and_plot_are_written_and_agree_with_the_kinetics(tmp_path, capsys):
    _, x = T.simulate_table(5, 150, 6, method="exact")
    x[3] = 0  # a gene with only zeros: skipped
    path = _write(tmp_path / "c.csv", "gene", [f"cell{j}" for j in range(150)], SYMBOLS[:5], x)
    out = tmp_path / "o"
    argv = ["telegraph", "fit", str(path), "--out", str(out), "--backend", "serial"]
    assert main([*argv, "--chunk-size", "2"]) == 0  # with intervals
    text = capsys.readouterr().out
    assert "Summary" in text and widest_line(text) <= 100
    for name in ("kinetics.csv", "summary.json", "burst_kinetics.png"):
        assert str(out / name) in text
    png = (out / "burst_kinetics.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    s = json.loads((out / "summary.json").read_text())
    rows = [
        r
        for r in csv.DictReader((out / "kinetics.csv").read_text().splitlines())
        if r["k_on"] != "nan"
    ]
    ok = {q: [r[f"{q}_structural"] == r[f"{q}_practical"] == "False" for r in rows]
          for q in ("bf", "bs")}  # fmt: skip
    assert s["genes"] == 5 and s["genes_fitted"] == len(rows) == 4
    assert s["skipped_only_zeros"] == 1 and s["genes_skipped"] == 1
    assert s["burst_frequency_identifiable"] == sum(ok["bf"])
    assert s["burst_size_identifiable"] == sum(ok["bs"])
    for q, name in (("bf", "burst_frequency"), ("bs", "burst_size")):
        every = [float(r[name]) for r in rows]
        ident = [v for v, k in zip(every, ok[q], strict=True) if k]
        assert s[f"median_{name}"] == pytest.approx(np.median(every), rel=1e-5)
        median = pytest.approx(np.median(ident), rel=1e-5) if ident else None  # null: none
        assert s[f"median_{name}_identifiable"] == median
    # a rerun resumes from the checkpoint and writes the same summary
    (out / "summary.json").unlink()
    assert main([*argv, "--chunk-size", "2"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text()) == s


# ------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("name", "extra", "match"),
    [
        ("c.xlsx", [], "unknown file type '.xlsx'"),
        ("c.csv", ["--layer", "counts"], "layer applies to .h5ad files only"),
        ("folder", [], "not a 10x matrix folder, missing matrix.mtx"),
    ],
)
def test_careless_inputs_are_one_error_line(tmp_path, capsys, name, extra, match):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    else:
        path.write_text("gene,c1,c2\nA,1,2\n")
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert match in one_error_line(capsys)


def test_an_h5ad_without_anndata_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "anndata", None)
    path = tmp_path / "a.h5ad"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o")]) == 2
    assert 'pip install "stochgrad[bio]"' in one_error_line(capsys)
