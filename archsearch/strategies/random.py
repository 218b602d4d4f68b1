"""Random search: uniform samples of valid architectures, without repeats by default.

The baseline every NAS method must beat (Li & Talwalkar, "Random Search and Reproducibility
for Neural Architecture Search", arXiv:1902.07638; DARTS reports it at 3.29 % CIFAR-10
error, arXiv:1806.09055). Sampling is delegated to `space.sample`, so spaces with a
cross-dimension rule (the DARTS cell) stay uniform over *valid* architectures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archsearch.errors import ConfigError
from archsearch.space import Arch, SearchSpace, SpaceExhausted
from archsearch.strategies._base import SampleStrategy

# Consecutive duplicate draws after which rejection sampling is given up. Reaching it
# means (with overwhelming probability) that more than 99 % of the space has been seen.
MAX_REJECTIONS = 1000


class RandomSearch(SampleStrategy):
    """Proposes independent uniform samples of the space.

    Without duplicates (the default) every proposal is new: duplicates are rejected and
    redrawn. When a finite space's every architecture has been proposed, `ask` raises
    `SpaceExhausted`. Near the end of a small finite space, rejection sampling would
    waste many draws, so after `MAX_REJECTIONS` consecutive duplicates the strategy draws
    uniformly from the architectures it has not proposed yet (enumerated in the space's
    stable order); a space too large to enumerate gives up with `SpaceExhausted` instead.

    Args:
        space: the search space.
        seed: seeds every draw.
        allow_duplicates: propose independent samples, repeats included (never exhausts).

    Example:
        >>> from archsearch.testing import categorical_space
        >>> strategy = RandomSearch(categorical_space(), seed=0)
        >>> strategy.space.contains(strategy.ask())
        True
    """

    may_converge = False  # never settles: it walks a fixed order or never repeats

    def __init__(self, space: SearchSpace, *, seed: int | None = None,
                 allow_duplicates: bool = False) -> None:
        super().__init__(space, seed=seed)
        if not isinstance(allow_duplicates, bool):
            raise ConfigError(f"allow_duplicates must be true or false, got {allow_duplicates!r}")
        self.allow_duplicates = allow_duplicates
        self._seen: list[str] = []  # fingerprints of proposals, in order (for the state)
        self._seen_set: set[str] = set()
        # Once rejection sampling has stalled: the unproposed archs in enumeration order
        # (rebuilt from `_seen` after a restore, so it is not part of the state).
        self._enumerating = False
        self._remaining: list[Arch] | None = None

    def extra_repr(self) -> str:
        return f"seed={self.seed}, allow_duplicates={self.allow_duplicates}"

    def ask(self) -> Arch:
        if self.allow_duplicates:
            return self.space.sample(self.rng)
        if self.space.is_finite() and len(self._seen) >= self.space.size():
            raise SpaceExhausted(f"random search has proposed all {len(self._seen):,} "
                                 f"architectures of space {self.space.name!r}")
        arch = self._pick_remaining() if self._enumerating else self._draw_new()
        self._remember(arch)
        return arch

    def _draw_new(self) -> Arch:
        for _ in range(MAX_REJECTIONS):
            arch = self.space.sample(self.rng)
            if arch.fingerprint() not in self._seen_set:
                return arch
        self._enumerating = True
        return self._pick_remaining()

    def _pick_remaining(self) -> Arch:
        if self._remaining is None:
            try:
                archs = list(self.space.enumerate())
            except ConfigError:  # too large to enumerate: stop rather than loop forever
                raise SpaceExhausted(
                    f"random search found no new architecture of space {self.space.name!r} "
                    f"in {MAX_REJECTIONS} draws after {len(self._seen):,} proposals") from None
            self._remaining = [a for a in archs if a.fingerprint() not in self._seen_set]
        if not self._remaining:
            raise SpaceExhausted(f"random search has proposed all {len(self._seen):,} "
                                 f"architectures of space {self.space.name!r}")
        # pop() keeps the order of the rest, so a restored strategy rebuilds the same list.
        return self._remaining.pop(int(self.rng.integers(len(self._remaining))))

    def _remember(self, arch: Arch) -> None:
        fingerprint = arch.fingerprint()
        self._seen.append(fingerprint)
        self._seen_set.add(fingerprint)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(seen=list(self._seen), enumerating=self._enumerating)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._seen = list(state["seen"])
        self._seen_set = set(self._seen)
        self._enumerating = bool(state["enumerating"])
        self._remaining = None
