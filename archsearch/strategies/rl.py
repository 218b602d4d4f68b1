"""REINFORCE controller: an LSTM that samples architectures one decision at a time.

Zoph & Le, "Neural Architecture Search with Reinforcement Learning", arXiv:1611.01578.

The controller emits one decision per dimension, in `space.dims` order. Step t reads the
previous decision (an embedding; a separate table per step, because each dimension has its
own vocabulary) and outputs a softmax over that dimension's values (`dim.discretize`). The
softmax is masked with `space.allowed(label, earlier decisions)`, so spaces with a
cross-dimension rule (DARTS: exactly two inputs per node) only ever yield valid archs.

Training is REINFORCE with a moving-average baseline (paper, section 3.2):

    ∇θ J ≈ (1/m) Σ_k Σ_t ∇θ log P(a_t | a_{1:t−1}; θ) · (R_k − b)

plus an entropy bonus (as in ENAS, arXiv:1802.03268) that keeps the controller exploring.
One Adam step is taken after every `batch_size` scored trials (m = batch_size). By default
the advantage R − b is divided by a moving estimate of its standard deviation, which makes
the learning rate and entropy weight independent of the metric's scale (accuracy in [0, 1]
or a loss in the hundreds); `normalize_advantage=False` gives the paper's raw R − b.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from archsearch.errors import ArchError, ConfigError
from archsearch.space import Arch, SearchSpace
from archsearch.strategies._base import SampleStrategy

# A softmax over more values than this is a sign of a mis-declared Int (use a step or log).
MAX_VALUES = 1024
# Initial weights are uniform in ±INIT_RANGE (as in ENAS), so the first softmaxes are
# nearly uniform: the untrained controller behaves like random search.
INIT_RANGE = 0.1

Mask = list[bool] | None  # None: every value allowed


class _Policy(nn.Module):
    """An LSTM cell, a learned first input, one embedding and one softmax head per step."""

    def __init__(self, sizes: Sequence[int], hidden_size: int) -> None:
        super().__init__()
        # skip_init: the default initialisers would draw from torch's global RNG.
        skip = nn.utils.skip_init
        self.start = nn.Parameter(torch.empty(hidden_size))
        self.cell = skip(nn.LSTMCell, hidden_size, hidden_size)
        self.embeds = nn.ModuleList(skip(nn.Embedding, n, hidden_size) for n in sizes[:-1])
        self.heads = nn.ModuleList(skip(nn.Linear, hidden_size, n) for n in sizes)

    def reset(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)

    def begin(self, batch: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The first input (B, H) and a zero LSTM state."""
        zeros = self.start.new_zeros(batch, self.start.numel())
        return self.start.expand(batch, -1), (zeros, zeros)

    def step(self, t: int, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits (B, n_t) of decision t and the new state."""
        h, c = self.cell(x, state)
        return self.heads[t](h), (h, c)

    def feed(self, t: int, index: torch.Tensor) -> torch.Tensor:
        """The input of step t + 1: the embedding of decision t (B,) -> (B, H)."""
        return self.embeds[t](index)


class _NumpyPolicy:
    """A float64 numpy copy of a `_Policy` that runs its forward pass for one sequence."""

    def __init__(self, policy: _Policy) -> None:
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().double().numpy().copy()

        self.start = array(policy.start)
        self.w_ih, self.w_hh = array(policy.cell.weight_ih), array(policy.cell.weight_hh)
        self.bias = array(policy.cell.bias_ih) + array(policy.cell.bias_hh)
        self.embeds = [array(e.weight) for e in policy.embeds]
        self.heads = [(array(lin.weight), array(lin.bias)) for lin in policy.heads]

    def step(self, t: int, x: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits of decision t and the new (h, c), as `nn.LSTMCell` (gates i, f, g, o)."""
        i, f, g, o = np.split(self.w_ih @ x + self.w_hh @ h + self.bias, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        weight, bias = self.heads[t]
        return weight @ h + bias, h, c


class ReinforceController(SampleStrategy):
    """An LSTM controller trained with REINFORCE (Zoph & Le, 2016).

    Args:
        space: the search space; continuous Floats become `num_float_bins` values.
        seed: seeds the initial weights and every sampled decision.
        hidden_size: LSTM width.
        lr: Adam learning rate.
        baseline_decay: the baseline is b ← decay·b + (1 − decay)·R after each reward.
        entropy_weight: weight of the entropy bonus (larger explores longer).
        batch_size: scored trials per update (the paper's m).
        num_float_bins: values offered for a continuous Float dimension.
        normalize_advantage: divide R − b by a moving estimate of its standard deviation.

    Example:
        >>> from archsearch.space import Categorical, SearchSpace
        >>> space = SearchSpace.from_dims({"act": Categorical(["relu", "tanh"])})
        >>> rl = ReinforceController(space, seed=0)
        >>> arch = rl.ask()
        >>> rl.tell(arch, 1.0)
        >>> 0.0 < rl.probability(arch) < 1.0
        True
    """

    def __init__(self, space: SearchSpace, *, seed: int | None = None, hidden_size: int = 64,
                 lr: float = 0.02, baseline_decay: float = 0.95, entropy_weight: float = 0.01,
                 batch_size: int = 4, num_float_bins: int = 10,
                 normalize_advantage: bool = True) -> None:
        super().__init__(space, seed=seed)
        _check_settings(hidden_size=hidden_size, lr=lr, baseline_decay=baseline_decay,
                        entropy_weight=entropy_weight, batch_size=batch_size,
                        num_float_bins=num_float_bins)
        self.hidden_size = hidden_size
        self.lr = lr
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.batch_size = batch_size
        self.num_float_bins = num_float_bins
        self.normalize_advantage = normalize_advantage
        self._labels = list(space.dims)
        self._values = [tuple(dim.discretize(num_float_bins)) for dim in space.dims.values()]
        for label, values in zip(self._labels, self._values, strict=True):
            if len(values) > MAX_VALUES:
                raise ConfigError(f"dimension {label!r} has {len(values):,} values; the RL "
                                  f"controller handles at most {MAX_VALUES} (give it a step)")
        self._index = [{_key(v): i for i, v in enumerate(vals)} for vals in self._values]
        # Only spaces with a cross-dimension rule override `allowed`; skip it otherwise.
        self._constrained = type(space).allowed is not SearchSpace.allowed
        self.policy = _Policy([len(v) for v in self._values], hidden_size)
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        self.policy.reset(generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr, foreach=True)
        self.baseline: float | None = None
        self._deviation_sq = 0.0  # EMA of (R − b)², before bias correction
        self._num_rewards = 0
        self._batch: list[dict[str, Any]] = []  # {"indices": [...], "advantage": float}
        self._numpy_policy: _NumpyPolicy | None = None  # float64 copy for `ask`, see there

    def extra_repr(self) -> str:
        return (f"hidden_size={self.hidden_size}, lr={self.lr}, batch_size={self.batch_size}, "
                f"entropy_weight={self.entropy_weight}")

    # --- sampling ------------------------------------------------------------------------
    def ask(self) -> Arch:
        # Sampling runs in numpy (float64) on a copy of the weights: one LSTM step costs a
        # few µs there against tens of µs of torch dispatch; training stays in torch.
        net = self._sampler()
        choices: dict[str, Any] = {}
        x, h, c = net.start, np.zeros_like(net.start), np.zeros_like(net.start)
        for t, label in enumerate(self._labels):
            logits, h, c = net.step(t, x, h, c)
            k = self._draw(logits, self._mask(t, choices))
            choices[label] = self._values[t][k]
            if t + 1 < len(self._labels):
                x = net.embeds[t][k]
        return self.space.arch(choices)

    def _sampler(self) -> _NumpyPolicy:
        if self._numpy_policy is None:
            self._numpy_policy = _NumpyPolicy(self.policy)
        return self._numpy_policy

    def _draw(self, logits: np.ndarray, mask: Mask) -> int:
        """Inverse-CDF sampling with the strategy's numpy generator."""
        z = logits
        if mask is not None:
            z = np.where(mask, z, -np.inf)
        cdf = np.cumsum(np.exp(z - z.max()))
        k = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        # Rounding can put u·total at the very end: take the last value with p > 0.
        return k if k < len(cdf) else int(np.flatnonzero(np.diff(cdf, prepend=0.0))[-1])

    def _mask(self, t: int, partial: Mapping[str, Any]) -> Mask:
        if not self._constrained:
            return None
        label, values = self._labels[t], self._values[t]
        allowed = tuple(self.space.allowed(label, partial))
        if allowed == values or allowed == tuple(self.space.dims[label].discretize()):
            return None
        keys = {_key(v) for v in allowed}
        mask = [_key(v) in keys or _close_to_any(v, allowed) for v in values]
        if not any(mask):
            raise ArchError(f"space {self.space.name!r}: no value of {label!r} is allowed "
                            f"after {dict(partial)}")
        return mask

    # --- learning ------------------------------------------------------------------------
    def tell(self, arch: Arch, score: float | None) -> None:
        """Record the reward of `arch`; every `batch_size` rewards, take one update step.

        The decisions are recovered from the arch's values, and log P is computed at update
        time, so asks may run ahead of tells in any order. A failed trial (None) or a
        non-finite score carries no reward and is skipped; so is an arch the controller
        cannot emit (a Float value off its grid).
        """
        if score is None or not math.isfinite(score):
            return
        indices = self._indices(arch)
        if indices is None:
            return
        advantage = self._advantage(float(score))
        self._batch.append({"indices": indices, "advantage": advantage})
        if len(self._batch) >= self.batch_size:
            self._update()

    def _advantage(self, reward: float) -> float:
        """R − b with b the EMA of earlier rewards (then b is updated), optionally / σ."""
        if self.baseline is None:
            self.baseline = reward  # the first reward is its own baseline: advantage 0
        advantage = reward - self.baseline
        decay = self.baseline_decay
        self.baseline = decay * self.baseline + (1.0 - decay) * reward
        self._num_rewards += 1
        self._deviation_sq = decay * self._deviation_sq + (1.0 - decay) * advantage**2
        if not self.normalize_advantage:
            return advantage
        # Bias-corrected (as Adam's moments) so the first rewards are not over-scaled.
        variance = self._deviation_sq / (1.0 - decay**self._num_rewards)
        return advantage / math.sqrt(variance) if variance > 0.0 else 0.0

    def _update(self) -> None:
        batch, self._batch = self._batch, []
        indices = torch.tensor([item["indices"] for item in batch])  # (B, T)
        advantage = torch.tensor([item["advantage"] for item in batch])  # (B,)
        log_prob, entropy = self._log_prob(indices)
        # Maximise J + β·H: ∇J = mean_k Σ_t ∇ log P(a_t | a_{1:t−1}) (R_k − b)  (eq. 2).
        loss = -(advantage * log_prob).mean() - self.entropy_weight * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._numpy_policy = None

    def _log_prob(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(a_1..a_T) and Σ_t H(P(· | a_{1:t−1})) of each sequence (B, T) -> (B,), (B,).

        Teacher forcing: the recorded decisions are fed back instead of new samples.
        """
        batch = indices.shape[0]
        masks = self._masks(indices.tolist())
        x, state = self.policy.begin(batch)
        log_prob = entropy = torch.zeros(batch)
        for t in range(len(self._labels)):
            logits, state = self.policy.step(t, x, state)
            if masks[t] is not None:
                logits = logits.masked_fill(~masks[t], -math.inf)
            logp = logits.log_softmax(dim=1)  # (B, n_t); −inf where masked
            log_prob = log_prob + logp.gather(1, indices[:, t:t + 1]).squeeze(1)
            finite = logp.masked_fill(torch.isinf(logp), 0.0)  # 0·log 0 = 0
            entropy = entropy - (logp.exp() * finite).sum(dim=1)
            if t + 1 < len(self._labels):
                x = self.policy.feed(t, indices[:, t])
        return log_prob, entropy

    def _masks(self, sequences: list[list[int]]) -> list[torch.Tensor | None]:
        """Per step, a (B, n_t) bool mask of the allowed values, or None if all are."""
        if not self._constrained:
            return [None] * len(self._labels)
        rows: list[list[Mask]] = []
        for seq in sequences:
            partial: dict[str, Any] = {}
            row = []
            for t, (label, k) in enumerate(zip(self._labels, seq, strict=True)):
                row.append(self._mask(t, partial))
                partial[label] = self._values[t][k]
            rows.append(row)
        masks: list[torch.Tensor | None] = []
        for t, values in enumerate(self._values):
            column = [row[t] for row in rows]
            masks.append(None if all(m is None for m in column) else torch.tensor(
                [m if m is not None else [True] * len(values) for m in column]))
        return masks

    def _indices(self, arch: Arch) -> list[int] | None:
        """The controller's decision indices of `arch`, or None if it cannot emit it."""
        indices = []
        for t, label in enumerate(self._labels):
            value = arch[label]
            k = self._index[t].get(_key(value))
            if k is None:
                close = [i for i, v in enumerate(self._values[t]) if _close_to_any(value, [v])]
                if not close:
                    return None
                k = close[0]
            indices.append(k)
        return indices

    # --- inspection and state ------------------------------------------------------------
    def probability(self, arch: Arch) -> float:
        """P(arch) under the current controller: Π_t P(a_t | a_{1:t−1}); 0 if off its grid.

        Raises:
            ArchError: `arch` is not in the space.
        """
        self.space.validate(arch)
        indices = self._indices(arch)
        if indices is None:
            return 0.0
        with torch.no_grad():
            log_prob, _ = self._log_prob(torch.tensor([indices]))
        return float(log_prob.double().exp())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        optimizer_state = self.optimizer.state_dict()["state"]
        state.update({
            "policy": {name: value.tolist() for name, value in self.policy.state_dict().items()},
            "optimizer": {str(i): {name: _tensor_to_json(v) for name, v in s.items()}
                          for i, s in optimizer_state.items()},
            "baseline": self.baseline,
            "deviation_sq": self._deviation_sq,
            "num_rewards": self._num_rewards,
            "batch": [dict(item) for item in self._batch],
        })
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict({name: torch.tensor(value, dtype=torch.float32)
                                     for name, value in state["policy"].items()})
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({
            "state": {int(i): {name: _tensor_from_json(v) for name, v in s.items()}
                      for i, s in state["optimizer"].items()},
            "param_groups": groups,
        })
        self._numpy_policy = None
        self.baseline = state["baseline"]
        self._deviation_sq = state["deviation_sq"]
        self._num_rewards = state["num_rewards"]
        self._batch = [{"indices": list(item["indices"]), "advantage": item["advantage"]}
                       for item in state["batch"]]


def _check_settings(*, hidden_size: int, lr: float, baseline_decay: float,
                    entropy_weight: float, batch_size: int, num_float_bins: int) -> None:
    if hidden_size < 1:
        raise ConfigError(f"hidden_size must be at least 1, got {hidden_size}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr}")
    if not 0.0 <= baseline_decay < 1.0:
        raise ConfigError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
    if not entropy_weight >= 0:
        raise ConfigError(f"entropy_weight must be non-negative, got {entropy_weight}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if num_float_bins < 2:
        raise ConfigError(f"num_float_bins must be at least 2, got {num_float_bins}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


def _key(value: Hashable) -> tuple[type, Hashable]:
    # The type is part of the key: True == 1 in Python, but they are different choices.
    return (type(value), value)


def _close_to_any(value: Any, candidates: Sequence[Any]) -> bool:
    """Float values match up to rounding (a grid recomputed elsewhere may differ in ulps)."""
    return isinstance(value, float) and any(
        isinstance(c, float) and math.isclose(value, c, rel_tol=1e-9, abs_tol=1e-12)
        for c in candidates)


def _tensor_to_json(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"dtype": str(value.dtype).removeprefix("torch."), "data": value.tolist()}
    return value


def _tensor_from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"dtype", "data"}:
        return torch.tensor(value["data"], dtype=getattr(torch, value["dtype"]))
    return value
