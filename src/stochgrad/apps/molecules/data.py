"""SMILES corpora and a tokenizer that keeps multi-character atoms whole.

Two corpora are read from installed packages, never from the network: the MOSES training set
(Polykovskiy et al. 2020, "Molecular Sets (MOSES)", Front. Pharmacol.; shipped as
``moses/dataset/data/train.csv.gz`` in the ``molsets`` wheel) and RDKit's small NCI set
(``RDConfig.RDDataDir/NCI/first_5K.smi``), used for quick tests.

The ``moses`` package's ``__init__`` fails to import with current pandas, so the data file is
located with :func:`importlib.util.find_spec` without importing the package.

The tokenizer uses the regular expression of Schwaller et al. 2019 ("Molecular Transformer",
ACS Cent. Sci.): bracket atoms (``[nH]``, ``[C@@H]``, ``[N+]``), ``Cl``, ``Br`` and two-digit
ring closures (``%10``) are single tokens, so that the policy never has to spell them.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from stochgrad._checks import check_choice, check_int, check_seed

__all__ = [
    "PAD",
    "START",
    "END",
    "SMILES_REGEX",
    "Vocabulary",
    "tokenize",
    "moses_path",
    "load_moses",
    "load_nci",
    "CORPORA",
    "load_corpus",
]

PAD, START, END = "<pad>", "^", "$"

SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)


def tokenize(smiles: str) -> list[str]:
    """Split one SMILES string into tokens, keeping multi-character atoms whole.

    Args:
        smiles: a SMILES string.

    Returns:
        The list of tokens; ``"".join(tokens) == smiles``.

    Raises:
        TypeError: if ``smiles`` is not a string.
        ValueError: if some characters match no token (e.g. an unclosed bracket).

    >>> tokenize("Clc1cc[nH]c1Br.C%10CC%10")
    ['Cl', 'c', '1', 'c', 'c', '[nH]', 'c', '1', 'Br', '.', 'C', '%10', 'C', 'C', '%10']
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a str, got {type(smiles).__name__}")
    tokens = SMILES_REGEX.findall(smiles)
    if "".join(tokens) != smiles:
        raise ValueError(f"smiles {smiles!r} contains characters that form no SMILES token")
    return tokens


class Vocabulary:
    """Token <-> index map with pad (index 0), start and end tokens.

    Args:
        tokens: the chemical tokens (the special tokens are added first, in the order
            ``<pad>, ^, $``).

    >>> voc = Vocabulary.from_smiles(["CCO", "c1ccccc1Cl"])
    >>> voc.decode(voc.encode("c1ccccc1Cl"))
    'c1ccccc1Cl'
    >>> voc.encode("CCO").tolist()[:2] == [voc.start_index, voc["C"]]
    True
    """

    def __init__(self, tokens: Iterable[str]):
        special = [PAD, START, END]
        chem = sorted({t for t in tokens if t not in special})
        self.tokens: list[str] = special + chem
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        self.pad_index, self.start_index, self.end_index = 0, 1, 2

    @classmethod
    def from_smiles(cls, smiles: Iterable[str]) -> Vocabulary:
        """The vocabulary of all tokens occurring in ``smiles``."""
        found: set[str] = set()
        for s in smiles:
            found.update(tokenize(s))
        return cls(found)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, token: str) -> int:
        return self.index[token]

    def encode(self, smiles: str) -> torch.Tensor:
        """``[start, tokens..., end]`` as a 1-D long tensor.

        Raises:
            ValueError: if a token is not in the vocabulary.
        """
        toks = tokenize(smiles)
        missing = [t for t in toks if t not in self.index]
        if missing:
            raise ValueError(f"smiles {smiles!r} has tokens not in the vocabulary: {missing}")
        ids = [self.start_index] + [self.index[t] for t in toks] + [self.end_index]
        return torch.tensor(ids, dtype=torch.long)

    def encode_batch(self, smiles: Sequence[str]) -> torch.Tensor:
        """Encode and right-pad with ``pad_index`` to ``[batch, max_len]``."""
        if len(smiles) == 0:
            raise ValueError("smiles must be a non-empty sequence")
        return torch.nn.utils.rnn.pad_sequence(
            [self.encode(s) for s in smiles], batch_first=True, padding_value=self.pad_index
        )

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Tokens up to the first end (or pad) token, joined; a leading start token is skipped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        out = []
        for k, i in enumerate(ids):
            if k == 0 and i == self.start_index:
                continue
            if i in (self.end_index, self.pad_index):
                break
            out.append(self.tokens[i])
        return "".join(out)

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        """Decode every row of a ``[batch, length]`` tensor."""
        return [self.decode(row) for row in ids.tolist()]

    def state_dict(self) -> dict[str, list[str]]:
        """A plain dict for checkpoints."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        """Inverse of :meth:`state_dict`."""
        voc = cls(state["tokens"])
        if voc.tokens != list(state["tokens"]):
            raise ValueError("state['tokens'] must start with the special tokens <pad>, ^, $")
        return voc


def moses_path() -> Path:
    """Path of the MOSES training set inside the installed ``molsets`` package.

    Raises:
        FileNotFoundError: if ``molsets`` is not installed.
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the MOSES data ships with the 'molsets' package: pip install --no-deps molsets"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data" / "train.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"MOSES training set not found at {path}")
    return path


def load_moses(n: int | None = None, *, seed: int = 0, max_tokens: int = 100) -> list[str]:
    """A seeded random subset of the MOSES training SMILES (1.58 M molecules).

    Args:
        n: how many SMILES (``None``: all).
        seed: seed of the subset.
        max_tokens: drop SMILES longer than this many tokens.

    Returns:
        The list of SMILES, in a seeded random order.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    if n is not None:
        check_int("n", n, minimum=1)
    check_seed("seed", seed)
    check_int("max_tokens", max_tokens, minimum=1)
    with gzip.open(moses_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    smiles = [s for s in lines[1:] if s]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(smiles))
    picked: list[str] = []
    for i in order:
        s = smiles[i]
        if len(tokenize(s)) <= max_tokens:
            picked.append(s)
            if n is not None and len(picked) == n:
                break
    return picked


def load_nci(n: int | None = None) -> list[str]:
    """The first ``n`` SMILES of RDKit's NCI subset (``NCI/first_5K.smi``), canonicalised.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    from rdkit import Chem, RDConfig, RDLogger

    if n is not None:
        check_int("n", n, minimum=1)
    RDLogger.DisableLog("rdApp.*")
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        mol = Chem.MolFromSmiles(line.split()[0])
        if mol is not None:
            out.append(Chem.MolToSmiles(mol))
            if n is not None and len(out) == n:
                break
    return out


#: The training corpora :func:`load_corpus` knows.
CORPORA = ("moses", "nci")


def load_corpus(name: str, n: int | None = None, *, seed: int = 0) -> list[str]:
    """``n`` training SMILES of corpus ``name``: a seeded MOSES subset, or the first NCI ones.

    Args:
        name: ``"moses"`` (:func:`load_moses`) or ``"nci"`` (:func:`load_nci`, ``seed`` unused).
        n: how many (``None``: all).
        seed: seed of the MOSES subset.

    Raises:
        ValueError: an unknown corpus or a non-positive ``n``.
        FileNotFoundError: the MOSES data is not installed.
    """
    check_choice("corpus", name, CORPORA)
    if name == "moses":
        return load_moses(n, seed=seed)
    return load_nci(n)
