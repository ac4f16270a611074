"""A GRU language model over SMILES tokens: the prior and the policy of the agent.

The model factorises a SMILES string token by token,

.. math:: \\log P_\\theta(x) = \\sum_{t=1}^{T} \\log \\pi_\\theta(x_t \\mid x_{<t}),

and is trained by maximum likelihood with teacher forcing (Segler et al. 2018, "Generating
focused molecule libraries for drug discovery with recurrent neural networks", ACS Cent. Sci.;
Olivecrona et al. 2017, "Molecular de-novo design through deep reinforcement learning",
J. Cheminform., whose prior is a 3 x 512 GRU). Sampling is batched: all sequences of a batch
advance together, and the only Python loop runs over token positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stochgrad._checks import check_float, check_int, check_probability, check_seed
from stochgrad.apps.molecules.data import Vocabulary
from stochgrad.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    check_settings,
    field,
    load_state,
    save_state,
)

__all__ = [
    "GRUConfig",
    "SmilesGRU",
    "PretrainConfig",
    "pretrain",
    "load_model",
    "save_model",
    "load_prior",
    "default_prior_path",
    "training_data",
    "resolve_device",
]


@dataclass(frozen=True)
class GRUConfig:
    """Sizes of the GRU language model.

    The default (2 layers x 256, embedding 64, about 0.6 M weights) samples about a thousand
    SMILES a second on one CPU thread, which keeps a 10k-call policy-gradient run near a minute.
    REINVENT's prior is 3 x 512 and MOSES' CharRNN a 3 x 768 LSTM.
    """

    embedding: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    max_length: int = 100


class SmilesGRU(nn.Module):
    """Embedding -> multi-layer GRU -> linear logits over the vocabulary.

    Args:
        vocab: the token vocabulary.
        config: layer sizes.

    >>> from stochgrad.apps.molecules.data import Vocabulary
    >>> voc = Vocabulary.from_smiles(["CCO", "c1ccccc1"])
    >>> model = SmilesGRU(voc, GRUConfig(embedding=8, hidden=16, layers=1))
    >>> ids, logp = model.sample(4, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(logp, model.log_likelihood(ids))
    True
    """

    def __init__(self, vocab: Vocabulary, config: GRUConfig = GRUConfig()):
        super().__init__()
        for name in ("embedding", "hidden", "layers"):
            check_int(f"config.{name}", getattr(config, name), minimum=1)
        check_int("config.max_length", config.max_length, minimum=2)
        check_probability("config.dropout", config.dropout, open_high=True)
        self.vocab = vocab
        self.config = config
        self.embed = nn.Embedding(len(vocab), config.embedding, padding_idx=vocab.pad_index)
        self.gru = nn.GRU(
            config.embedding,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, len(vocab))
        # pad and start are never a next token: masked so that sampling and likelihood agree
        mask = torch.zeros(len(vocab))
        mask[[vocab.pad_index, vocab.start_index]] = float("-inf")
        self.register_buffer("logit_mask", mask, persistent=False)

    def forward(
        self, ids: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[batch, length, vocab]`` of the next token after each input token."""
        out, hidden = self.gru(self.embed(ids), hidden)
        return self.head(out) + self.logit_mask, hidden

    def token_log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """``log pi(x_t | x_<t)`` for t = 1..L-1, zero at padding: shape ``[batch, L-1]``.

        Args:
            ids: ``[batch, L]`` token ids starting with the start token, right-padded.
        """
        if ids.dim() != 2 or ids.shape[1] < 2:
            raise ValueError(f"ids must have shape [batch, length>=2], got {tuple(ids.shape)}")
        logits, _ = self(ids[:, :-1])
        target = ids[:, 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return torch.where(target != self.vocab.pad_index, logp, torch.zeros_like(logp))

    def log_likelihood(self, ids: torch.Tensor) -> torch.Tensor:
        """Sequence log-likelihood ``log P(x)`` (end token included), shape ``[batch]``."""
        return self.token_log_probs(ids).sum(dim=1)

    def sample(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        max_length: int | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``num`` sequences, all advancing together one token per step.

        Args:
            num: batch size.
            generator: the random generator (explicit randomness), on the model's device.
            max_length: cap on tokens after the start token (default ``config.max_length``);
                a sequence that reaches it without an end token is left unterminated.
            temperature: softmax temperature (1 samples the model itself).

        Returns:
            ``(ids, log_likelihood)``: ids ``[num, L]`` start with the start token and are
            padded after the end token; the log-likelihood is differentiable and equals
            :meth:`log_likelihood` of ``ids`` when ``temperature == 1``.
        """
        check_int("num", num, minimum=1)
        check_float("temperature", temperature, minimum=0.0, open_min=True)
        length = self.config.max_length if max_length is None else max_length
        check_int("max_length", length, minimum=1)
        voc = self.vocab
        device = self.head.weight.device
        token = torch.full((num, 1), voc.start_index, dtype=torch.long, device=device)
        hidden = None
        done = torch.zeros(num, dtype=torch.bool, device=device)
        ids = [token.squeeze(1)]
        logp = torch.zeros(num, device=device)
        for _ in range(length):
            logits, hidden = self(token, hidden)
            log_probs = torch.log_softmax(logits[:, -1] / temperature, dim=-1)
            nxt = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, voc.pad_index), nxt)
            step = log_probs.gather(1, nxt.unsqueeze(1)).squeeze(1)
            logp = logp + torch.where(done, torch.zeros_like(step), step)
            ids.append(nxt)
            done = done | (nxt == voc.end_index)
            token = nxt.unsqueeze(1)
            if bool(done.all()):
                break
        return torch.stack(ids, dim=1), logp

    @torch.no_grad()
    def sample_smiles(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Sample ``num`` SMILES strings in batches (no gradient).

        ``progress(n)``, if given, is called after each batch with the batch's size.
        """
        check_int("num", num, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        out: list[str] = []
        while len(out) < num:
            ids, _ = self.sample(min(batch_size, num - len(out)), generator=generator)
            out.extend(self.vocab.decode_batch(ids.cpu()))
            if progress is not None:
                progress(ids.shape[0])
        return out


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside dicts and lists moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_model(model: SmilesGRU, path: str | Path, **extra: Any) -> None:
    """Save weights, vocabulary and sizes (plus ``extra`` plain values) to a ``.pt`` file.

    Tensors are stored on the CPU, so a model trained on a GPU loads anywhere. The file is
    written atomically (:func:`stochgrad.checkpoint.save_state`) and holds only tensors and
    plain values, so :func:`load_model` reads it with ``weights_only=True``.
    """
    state = {
        "vocab": model.vocab.state_dict(),
        "config": asdict(model.config),
        "weights": _to_cpu(model.state_dict()),
        **_to_cpu(extra),
    }
    save_state(state, path)


MODEL_HINT = (
    "pass another --model, one written by 'stochgrad molecules pretrain' (its "
    "prior_weights.pt), or none for the shipped prior"
)


def _read_model(path: str | Path) -> tuple[SmilesGRU, dict[str, Any]]:
    """The model in ``path`` and the file's whole state, or one clear error naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    state = load_state(path, hint=MODEL_HINT)

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a SMILES model ({what}); {MODEL_HINT}")

    if not isinstance(state, dict):
        raise refuse(f"it holds a {type(state).__name__}")
    for key in ("vocab", "config", "weights"):
        if not isinstance(state.get(key), dict):
            raise refuse(f"no {key!r} field")
    try:
        vocab = Vocabulary.from_state_dict(state["vocab"])
        model = SmilesGRU(vocab, GRUConfig(**state["config"]))
        model.load_state_dict(state["weights"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise refuse(first) from None
    return model, state


def load_model(path: str | Path) -> SmilesGRU:
    """Load a model written by :func:`save_model` or :func:`pretrain`.

    The file is read with ``torch.load(weights_only=True)``: a planted file cannot run code.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        stochgrad.checkpoint.CheckpointError: an empty, truncated, corrupt or foreign file
            (one line naming it).
    """
    return _read_model(path)[0]


def training_data(path: str | Path) -> dict[str, Any] | None:
    """The training data a model file records (``{"corpus", "n", "seed"}``), or ``None``.

    :func:`save_model` stores it when given ``data=...``, as ``stochgrad molecules pretrain``
    does for ``prior_weights.pt`` and the shipped prior.
    """
    data = _read_model(path)[1].get("data")
    return data if isinstance(data, dict) else None


def default_prior_path() -> Path:
    """The pretrained prior shipped with the package (``stochgrad/data/smiles_prior.pt``)."""
    return Path(str(resources.files("stochgrad") / "data" / "smiles_prior.pt"))


def load_prior(path: str | Path | None = None) -> SmilesGRU:
    """The SMILES prior, in evaluation mode: the shipped one, or the model in ``path``.

    The shipped prior is a 2 x 256 GRU trained on 200,000 MOSES SMILES (validity 0.951 at
    10,000 samples; see ``docs/molecules.md``).

    >>> prior = load_prior()
    >>> len(prior.sample_smiles(3, generator=torch.Generator().manual_seed(0)))
    3
    """
    model = load_model(default_prior_path() if path is None else path)
    return model.eval()


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of maximum-likelihood pretraining (Adam, teacher forcing).

    The defaults are the recipe of the shipped prior: 17 epochs of 128 over 200k MOSES SMILES
    (26,571 steps): under 5 min on one GPU (``device="cuda"``), about 1.3 h on two CPU cores.
    """

    epochs: int = 17
    batch_size: int = 128
    lr: float = 3e-3
    lr_final: float = 2e-4
    clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_float("lr_final", self.lr_final, minimum=0.0, open_min=True)
        check_float("clip", self.clip, minimum=0.0, open_min=True)
        check_seed("seed", self.seed)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, refused with a ValueError if unknown or unavailable.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from None
    if out.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {device!r}")
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device here")
    return out


_device = resolve_device  # the name used before


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that must agree for a checkpoint to continue, flat (so that a mismatch
    names each one): all but epochs (a run may be continued with more) and the checkpoint
    interval."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    for key in ("epochs", "checkpoint_every"):
        out.pop(key, None)
    return out


def pretrain(
    smiles: Sequence[str],
    out_path: str | Path,
    *,
    gru: GRUConfig = GRUConfig(),
    config: PretrainConfig = PretrainConfig(),
    restart: bool = False,
    callback: Callable[[int, float], None] | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> tuple[SmilesGRU, list[float]]:
    """Train the GRU on ``smiles`` by teacher forcing; checkpoint and resume.

    The loss is the mean negative log-likelihood per molecule. The learning rate decays
    geometrically from ``lr`` to ``lr_final`` over all steps. A checkpoint (weights, optimiser,
    step, losses) is written every ``checkpoint_every`` steps and at the end, through
    :func:`stochgrad.checkpoint.save_state`; a resumed run replays the same batches and gives
    the same weights as an uninterrupted one. A checkpoint may also be continued with more
    ``epochs`` (other settings unchanged): the first epochs' batches stay the same and the
    learning rate then decays from its current value to ``lr_final`` over the remaining steps.

    Args:
        smiles: training SMILES.
        out_path: the ``.pt`` checkpoint (also the final model, readable by :func:`load_model`).
        gru: model sizes.
        config: optimisation settings.
        restart: ignore an existing checkpoint.
        callback: called as ``callback(steps_done, loss)`` after each step.
        device: where to train (``"cuda"`` on a GPU). The batches and the checkpoint do not
            depend on it, so a run may be resumed on another device; the weights then agree
            with a single-device run up to floating-point reordering.
        progress: ``progress(n)`` advances a progress bar by ``n`` steps: once by the steps
            found in a checkpoint, then by 1 after each step (after its checkpoint is saved).
        on_resume: called once as ``on_resume(steps_done, total_steps)`` when a checkpoint
            was loaded.

    Returns:
        ``(model, losses)`` with one loss per step; the model is on the CPU.

    Raises:
        ValueError: if ``smiles`` is empty, ``device`` is unknown or unavailable.
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint has other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.
    """
    if len(smiles) == 0:
        raise ValueError("smiles must be non-empty")
    out_path = Path(out_path)
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    vocab = Vocabulary.from_smiles(smiles)
    model = SmilesGRU(vocab, gru).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(smiles)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    total = config.epochs * steps_per_epoch
    gamma = (config.lr_final / config.lr) ** (1.0 / max(total, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    orders = [torch.randperm(n, generator=gen) for _ in range(config.epochs)]
    step, losses, seconds = 0, [], 0.0
    settings: dict[str, Any] = {"gru": asdict(gru), "pretrain": asdict(config), "n": n}
    if out_path.exists() and not restart:
        state = load_state(out_path)
        saved = field(state, "settings", out_path, dict)
        check_settings(_comparable(saved), _comparable(settings), out_path)
        pre = saved.get("pretrain")
        saved_epochs = pre.get("epochs") if isinstance(pre, dict) else None
        if isinstance(saved_epochs, bool) or not isinstance(saved_epochs, int):
            raise CheckpointError(
                f"{out_path}: not a pretraining checkpoint (no number of epochs in its "
                "settings); delete it, or rerun with --restart, to start afresh"
            )
        if saved_epochs > config.epochs:
            raise CheckpointMismatch(
                f"{out_path}: made with other settings (epochs: {saved_epochs} saved, "
                f"{config.epochs} now; only a larger number of epochs may continue a run); "
                "rerun with the same options, choose another output folder, or pass --restart "
                "to start afresh"
            )
        saved_vocab = Vocabulary.from_state_dict(field(state, "vocab", out_path, dict))
        if saved_vocab.tokens != vocab.tokens:
            raise CheckpointMismatch(
                f"{out_path}: made with another vocabulary (other training SMILES); "
                "pass --restart to start afresh"
            )
        try:
            model.load_state_dict(field(state, "weights", out_path, dict))
            opt.load_state_dict(field(state, "optimizer", out_path, dict))
            step = field(state, "step", out_path, int)
            losses = [float(v) for v in field(state, "losses", out_path, list)]
            seconds = float(field(state, "seconds", out_path, (int, float)))
            if saved_epochs == config.epochs:
                sched.load_state_dict(field(state, "scheduler", out_path, dict))
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
            # RuntimeError: torch's word for weights of another shape
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(
                f"{out_path}: its training state could not be read ({first}); delete it, or "
                "rerun with --restart, to start afresh"
            ) from None
        if saved_epochs != config.epochs:
            # more epochs than before: decay from the current rate to lr_final over the rest
            rest = max(total - step, 1)
            lr_now = opt.param_groups[0]["lr"]
            for group in opt.param_groups:
                group.pop("initial_lr", None)
            sched = torch.optim.lr_scheduler.ExponentialLR(
                opt, (config.lr_final / lr_now) ** (1.0 / rest)
            )
        if on_resume is not None:
            on_resume(step, total)
        if progress is not None and step:
            progress(min(step, total))

    def save() -> None:
        save_model(
            model,
            out_path,
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            step=step,
            losses=losses,
            seconds=seconds,
            settings=settings,
        )

    start = time.perf_counter() - seconds
    model.train()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        idx = orders[epoch][k * config.batch_size : (k + 1) * config.batch_size]
        batch = vocab.encode_batch([smiles[i] for i in idx.tolist()]).to(device)
        loss = -model.log_likelihood(batch).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        seconds = time.perf_counter() - start
        if step % config.checkpoint_every == 0 or step == total:
            save()
        if callback is not None:
            callback(step, losses[-1])
        if progress is not None:
            progress(1)
    if not out_path.exists():
        save()
    model.eval()
    return model.cpu(), losses
