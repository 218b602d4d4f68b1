"""Bayesian optimisation over encoded architectures: a Gaussian-process surrogate with
expected improvement (Jones et al. 1998, "Efficient Global Optimization"; Snoek et al. 2012).

Every architecture is a fixed-length vector (`space.encode`: one-hot per categorical
decision, position in [0, 1] per number). After `initial_trials` random proposals, each ask
fits scikit-learn's `GaussianProcessRegressor` to every told (arch, score) pair and returns
the unproposed candidate with the highest expected improvement. The candidates are random
samples plus mutations of the best archs told so far (the local search of BANANAS, White et
al. 2021), so a space with a cross-dimension rule (DARTS) only ever yields valid archs; a
small finite space is scored exhaustively instead.

Failed trials (score None) are imputed the worst score observed so far: the surrogate learns
that their region is bad without inventing a scale. Archs asked but not yet told (parallel
use) get the same worst score as a "constant liar" (Ginsbourger et al. 2010), which pushes
the next proposals away from them instead of piling onto one peak.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel

from archsearch.errors import ConfigError
from archsearch.space import Arch, SearchSpace, SpaceExhausted
from archsearch.strategies._base import SampleStrategy

# The surrogate needs at least this many finite scores before it can say anything.
MIN_SCORES = 2
# Random draws tried before concluding that a large space has nothing unproposed left.
MAX_DRAWS = 1000


def expected_improvement(mean: ArrayLike, std: ArrayLike, best: float,
                         xi: float = 0.0) -> np.ndarray:
    """Expected improvement over `best` of a maximised f ~ N(mean, std²), per candidate.

    EI = (μ − f* − ξ) Φ(z) + σ φ(z) with z = (μ − f* − ξ) / σ (Jones et al. 1998, eq. 15;
    ξ ≥ 0 trades exploitation for exploration, Lizotte 2008). Where σ = 0 the improvement is
    certain: max(μ − f* − ξ, 0).
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    gain = mean - best - xi
    positive = std > 0
    sigma = np.where(positive, std, 1.0)
    z = gain / sigma
    ei = gain * norm.cdf(z) + sigma * norm.pdf(z)
    # max(.., 0): the closed form can round to a tiny negative number far below `best`.
    return np.where(positive, np.maximum(ei, 0.0), np.maximum(gain, 0.0))


class BayesianOptimization(SampleStrategy):
    """GP + expected-improvement Bayesian optimisation (scores are maximised).

    Args:
        space: the search space.
        seed: seeds the random phase, the candidate pool and the GP's optimizer restarts.
        initial_trials: the first asks are uniformly random (without repeats).
        candidates: the size of the candidate pool scored by the acquisition per ask
            (half random samples, half mutations of the best told archs). A finite space
            with at most this many archs is scored whole.
        top_k: how many of the best told archs seed the mutated half of the pool.
        xi: EI's exploration margin, in units of the observed scores' standard deviation
            (so the same value works for accuracies and for negated latencies).
        restarts: extra random starts of the GP hyper-parameter optimisation (the fit is
            the expensive part of an ask; 0 keeps it at a few tens of ms).
        constant_liar: treat pending asks as observed with the worst score.
    """

    def __init__(self, space: SearchSpace, *, seed: int | None = None, initial_trials: int = 10,
                 candidates: int = 256, top_k: int = 5, xi: float = 0.01, restarts: int = 0,
                 constant_liar: bool = True) -> None:
        super().__init__(space, seed=seed)
        for name, value, low in (("initial_trials", initial_trials, 1),
                                 ("candidates", candidates, 1), ("top_k", top_k, 0),
                                 ("restarts", restarts, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"bo: {name} must be an integer >= {low}, got {value!r}")
        if not math.isfinite(xi) or xi < 0:
            raise ConfigError(f"bo: xi must be a finite number >= 0, got {xi!r}")
        self.initial_trials = initial_trials
        self.candidates = candidates
        self.top_k = top_k
        self.xi = float(xi)
        self.restarts = restarts
        self.constant_liar = bool(constant_liar)
        self._told: list[tuple[Arch, float | None]] = []
        self._pending: dict[str, Arch] = {}  # fingerprint -> arch, in ask order
        self._seen: dict[str, None] = {}  # every fingerprint proposed or told (ordered set)
        self._asks = 0
        self._codes: list[np.ndarray] = []  # encodings of the told archs (a cache)
        self._theta: list[float] | None = None  # the kernel's last optimised log-parameters
        self._tuned_at = 0  # how many archs had been told when they were optimised
        size = space.size()
        # A space with at most `candidates` archs is scored whole: (fingerprint, arch) pairs.
        self._small = size != math.inf and size <= candidates
        self._all: list[tuple[str, Arch]] | None = None

    def extra_repr(self) -> str:
        return (f"initial_trials={self.initial_trials}, candidates={self.candidates}, "
                f"xi={self.xi}")

    # --- ask / tell -----------------------------------------------------------------
    def ask(self) -> Arch:
        scores = [s for _, s in self._told if s is not None]
        arch = None
        if self._asks >= self.initial_trials and len(scores) >= MIN_SCORES:
            arch = self._acquire()
        if arch is None:
            arch = self._random_unseen()
        fingerprint = arch.fingerprint()
        self._asks += 1
        self._seen[fingerprint] = None
        self._pending[fingerprint] = arch
        return arch

    def tell(self, arch: Arch, score: float | None) -> None:
        """Record a result; None or a non-finite score counts as a failed trial."""
        self.space.validate(arch)
        if score is not None:
            score = float(score)
            if not math.isfinite(score):
                score = None
        fingerprint = arch.fingerprint()
        self._pending.pop(fingerprint, None)
        self._seen[fingerprint] = None
        self._told.append((arch, score))
        self._codes.append(self.space.encode(arch))

    # --- proposals --------------------------------------------------------------------
    def _unseen_in_space(self) -> list[Arch]:
        if self._all is None:
            self._all = [(arch.fingerprint(), arch) for arch in self.space.enumerate()]
        return [arch for fp, arch in self._all if fp not in self._seen]

    def _random_unseen(self) -> Arch:
        """A uniformly random arch not proposed before; SpaceExhausted if none is left."""
        if self._small:
            left = self._unseen_in_space()
            if not left:
                raise SpaceExhausted(f"bo: all {len(self._seen)} archs of space "
                                     f"{self.space.name!r} have been proposed")
            return left[int(self.rng.integers(len(left)))]
        for _ in range(MAX_DRAWS):
            arch = self.space.sample(self.rng)
            if arch.fingerprint() not in self._seen:
                return arch
        raise SpaceExhausted(f"bo: {MAX_DRAWS} random draws from space {self.space.name!r} "
                             "were all proposed before")

    def _pool(self) -> list[Arch]:
        """Unproposed candidates: random samples plus 1–2-step mutations of the best archs."""
        if self._small:
            return self._unseen_in_space()
        ranked = sorted((t for t in self._told if t[1] is not None), key=lambda t: -t[1])
        parents = [arch for arch, _ in ranked[:self.top_k]]
        local = self.candidates // 2 if parents else 0
        pool: dict[str, Arch] = {}
        for k in range(local):
            arch = parents[k % len(parents)]
            for _ in range(1 + int(self.rng.random() < 0.5)):
                arch = self.space.mutate(arch, self.rng)
            pool.setdefault(arch.fingerprint(), arch)
        for _ in range(self.candidates - local):
            arch = self.space.sample(self.rng)
            pool.setdefault(arch.fingerprint(), arch)
        return [arch for fp, arch in pool.items() if fp not in self._seen]

    def _acquire(self) -> Arch | None:
        """The pool's max-EI arch under a GP fitted to all told (and pending) archs."""
        gp, best, scale = self._fit()
        pool = self._pool()
        if not pool:
            return None
        mean, std = gp.predict(self._encode_all(pool), return_std=True)
        ei = expected_improvement(mean, std, best, self.xi * scale)
        return pool[int(np.argmax(ei))]  # first maximum: ties resolve deterministically

    def _fit(self) -> tuple[GaussianProcessRegressor, float, float]:
        """Fit the GP; returns it, the best observed score and the scores' spread."""
        scores = np.asarray([s for _, s in self._told if s is not None])
        worst = float(scores.min())
        codes = list(self._codes)
        y = [worst if s is None else s for _, s in self._told]
        if self.constant_liar and self._pending:
            codes += list(self._encode_all(list(self._pending.values())))
            y += [worst] * len(self._pending)
        # Hyper-parameters move little when a few points are added, so they are re-optimised
        # only once the data has grown by 10% (always while small), starting from the last
        # optimum; in between the fit is one Cholesky factorisation. Both the last optimum
        # and the size at which it was found are state, so a restored run refits identically.
        told = len(self._told)
        tune = self._theta is None or told >= self._tuned_at + max(1, self._tuned_at // 10)
        gp = GaussianProcessRegressor(self._kernel(), normalize_y=True,
                                      optimizer="fmin_l_bfgs_b" if tune else None,
                                      n_restarts_optimizer=self.restarts if tune else 0,
                                      random_state=int(self.rng.integers(2**31)))
        with warnings.catch_warnings():
            # Hyper-parameters at a bound are expected with few points; not the user's problem.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(np.stack(codes), np.asarray(y, dtype=np.float64))
        if tune:
            self._theta, self._tuned_at = gp.kernel_.theta.tolist(), told
        scale = float(scores.std()) if scores.size > 1 and scores.std() > 0 else 1.0
        return gp, float(scores.max()), scale

    def _kernel(self) -> Kernel:
        """Matern-5/2 (Snoek et al. 2012) with one length scale, plus learned noise.

        On one-hot codes the distance counts differing decisions, so one length scale gives
        a Hamming-style similarity with only three hyper-parameters to fit. WhiteKernel
        learns the noise of the scores (training is stochastic) on normalize_y's unit scale.
        """
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(length_scale=1.0, length_scale_bounds=(1e-2, 1e2), nu=2.5)
                  + WhiteKernel(1e-2, (1e-6, 1.0)))
        if self._theta is not None:
            kernel.theta = np.asarray(self._theta)
        return kernel

    def _encode_all(self, archs: list[Arch]) -> np.ndarray:
        return np.stack([self.space.encode(arch) for arch in archs])

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({
            "asks": self._asks,
            "told": [[dict(arch), score] for arch, score in self._told],
            "pending": [dict(arch) for arch in self._pending.values()],
            "seen": list(self._seen),
            "theta": self._theta,
            "tuned_at": self._tuned_at,
        })
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._asks = int(state["asks"])
        self._told = [(self.space.arch(choices), score) for choices, score in state["told"]]
        pending = [self.space.arch(choices) for choices in state["pending"]]
        self._pending = {arch.fingerprint(): arch for arch in pending}
        self._seen = dict.fromkeys(state["seen"])
        self._codes = [self.space.encode(arch) for arch, _ in self._told]
        self._theta = None if state["theta"] is None else [float(x) for x in state["theta"]]
        self._tuned_at = int(state["tuned_at"])
