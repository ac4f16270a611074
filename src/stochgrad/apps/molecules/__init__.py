"""De novo molecular design: a SMILES GRU prior fine-tuned by policy gradient (needs RDKit).

- :mod:`~stochgrad.apps.molecules.data`: MOSES and NCI corpora, the SMILES tokenizer and
  vocabulary;
- :mod:`~stochgrad.apps.molecules.model`: the GRU language model, its pretraining (a
  checkpointed trainer), model files and the shipped prior (:func:`load_prior`);
- :mod:`~stochgrad.apps.molecules.scoring`: QED, penalised logP, similarity, your own function
  of a batch of SMILES (:class:`BatchScore`, optionally in worker processes), the oracle, PMO's
  AUC;
- :mod:`~stochgrad.apps.molecules.metrics`: MOSES validity, uniqueness, novelty, diversity;
- :mod:`~stochgrad.apps.molecules.agent`: REINVENT and REINFORCE fine-tuning (a checkpointed
  trainer; REINFORCE through the engine's :func:`stochgrad.surrogate.surrogate_loss`).

The command ``stochgrad molecules pretrain|sample|optimize`` lives in
:mod:`stochgrad.cli.molecules`. RDKit is imported only by the functions that need it.

>>> from stochgrad.apps.molecules import Vocabulary, SmilesGRU, GRUConfig
>>> model = SmilesGRU(Vocabulary.from_smiles(["CCO"]), GRUConfig(embedding=4, hidden=8, layers=1))
>>> len(model.vocab)
5
"""

from stochgrad.apps.molecules.agent import (
    ADVANTAGES,
    METHODS,
    AgentConfig,
    AgentResult,
    AgentStep,
    optimize,
    policy_loss,
    reinforce_surrogate,
)
from stochgrad.apps.molecules.data import (
    CORPORA,
    Vocabulary,
    load_corpus,
    load_moses,
    load_nci,
    moses_path,
    tokenize,
)
from stochgrad.apps.molecules.metrics import (
    MosesMetrics,
    fingerprint_matrix,
    internal_diversity,
    moses_metrics,
)
from stochgrad.apps.molecules.model import (
    GRUConfig,
    PretrainConfig,
    SmilesGRU,
    default_prior_path,
    load_model,
    load_prior,
    pretrain,
    resolve_device,
    save_model,
    training_data,
)
from stochgrad.apps.molecules.scoring import (
    CELECOXIB,
    BatchScore,
    Oracle,
    ScoreError,
    canonical,
    make_objective,
    penalized_logp,
    qed_score,
    squash_logp,
    tanimoto_similarity,
    top_auc,
)

__all__ = [
    "ADVANTAGES",
    "CELECOXIB",
    "CORPORA",
    "METHODS",
    "AgentConfig",
    "AgentResult",
    "AgentStep",
    "BatchScore",
    "GRUConfig",
    "MosesMetrics",
    "Oracle",
    "PretrainConfig",
    "ScoreError",
    "SmilesGRU",
    "Vocabulary",
    "canonical",
    "default_prior_path",
    "fingerprint_matrix",
    "internal_diversity",
    "load_corpus",
    "load_model",
    "load_moses",
    "load_nci",
    "load_prior",
    "make_objective",
    "moses_metrics",
    "moses_path",
    "optimize",
    "penalized_logp",
    "policy_loss",
    "pretrain",
    "qed_score",
    "reinforce_surrogate",
    "resolve_device",
    "save_model",
    "squash_logp",
    "tanimoto_similarity",
    "tokenize",
    "top_auc",
    "training_data",
]
