"""Pretraining and sampling of the SMILES GRU on a GPU (skipped without CUDA).

The device only changes where the arithmetic runs: the batches, the initial weights and the
checkpoint format are the same, so a CUDA run tracks the CPU run to floating-point rounding,
a run may move between devices when resumed, and a model saved on the GPU loads on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from stochgrad.apps.molecules.data import Vocabulary
from stochgrad.apps.molecules.model import (
    GRUConfig,
    PretrainConfig,
    SmilesGRU,
    load_model,
    pretrain,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMILES = [
    "CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "c1ccncc1", "CC(C)Cl", "OC(=O)c1ccccc1",
    "CCOC(=O)C", "C1CCCCC1", "Brc1ccccc1", "CC#N", "NC(=O)N", "c1ccc2ccccc2c1", "CCCCO",
    "CC(C)(C)O", "O=C1CCCC1",
]  # fmt: skip
TINY = GRUConfig(embedding=8, hidden=16, layers=2, max_length=20)
CFG = PretrainConfig(epochs=3, batch_size=4, lr=1e-2, checkpoint_every=2)


def test_cuda_pretrain_tracks_cpu_and_loads_on_cpu(tmp_path):
    cpu, losses_cpu = pretrain(SMILES, tmp_path / "cpu.pt", gru=TINY, config=CFG)
    gpu, losses_gpu = pretrain(SMILES, tmp_path / "gpu.pt", gru=TINY, config=CFG, device="cuda")
    assert next(gpu.parameters()).device.type == "cpu"
    assert losses_gpu == pytest.approx(losses_cpu, rel=1e-4)
    for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    loaded = load_model(tmp_path / "gpu.pt")
    assert torch.equal(next(loaded.parameters()), next(gpu.parameters()))


def test_resume_moves_between_devices(tmp_path):
    class Stop(Exception):
        pass

    def interrupt(step: int, loss: float) -> None:
        if step == 5:
            raise Stop

    full, losses = pretrain(SMILES, tmp_path / "a.pt", gru=TINY, config=CFG)
    with pytest.raises(Stop):
        pretrain(SMILES, tmp_path / "b.pt", gru=TINY, config=CFG, device="cuda", callback=interrupt)
    resumed, losses_b = pretrain(SMILES, tmp_path / "b.pt", gru=TINY, config=CFG)
    assert len(losses_b) == len(losses) == 12
    assert losses_b == pytest.approx(losses, rel=1e-4)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_sampling_on_cuda_scores_its_own_likelihood():
    torch.manual_seed(0)
    model = SmilesGRU(Vocabulary.from_smiles(SMILES), TINY).cuda().eval()
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        ids, logp = model.sample(64, generator=gen)
        assert ids.device.type == "cuda"
        torch.testing.assert_close(logp, model.log_likelihood(ids), rtol=1e-5, atol=1e-5)
    assert len(model.sample_smiles(10, generator=gen)) == 10


def test_cli_pretrain_on_cuda_resumes_on_the_cpu(tmp_path, capsys):
    pytest.importorskip("rdkit")  # the NCI corpus is read with RDKit
    from stochgrad.checkpoint import load_state
    from stochgrad.cli import main

    argv = ["molecules", "pretrain", "--corpus", "nci", "--smiles", "32", "--hidden", "16"]
    argv += ["--layers", "1", "--embedding", "8", "--batch-size", "8", "--checkpoint-every", "2"]
    assert main([*argv, "--epochs", "1", "--device", "cuda", "--out", tmp_path]) == 0
    state = load_state(tmp_path / "prior_weights.pt")
    assert all(t.device.type == "cpu" for t in state["weights"].values())
    capsys.readouterr()
    # more epochs continue the GPU run on the CPU
    assert main([*argv, "--epochs", "2", "--device", "cpu", "--out", tmp_path]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert load_state(tmp_path / "prior.pt")["step"] == 8
