"""`SearchSpace`: ordered labelled dimensions plus what every strategy needs from a space.

The dimensions are the source of truth (spaces are static): grid search enumerates their
product, evolution mutates one of them, the RL controller emits one decision per dimension
in order, BO encodes them. A space with a validity rule across dimensions (the DARTS cell's
"exactly two inputs per node") overrides `check`, `allowed` and — where uniformity over
valid archs matters — `sample` and `mutate`, so strategies never need to know the rule.

A space is written either declaratively (`SearchSpace.from_dims`) or define-by-run with a
builder function `fn(c: Chooser, **kwargs) -> nn.Module` (`SearchSpace.from_builder`): a dry
run with a recording chooser yields the dimensions, a fixed chooser builds the model of an
Arch, and a supernet chooser builds the one-shot supernet.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from archsearch.errors import ArchError, ConfigError
from archsearch.space._arch import Arch, hash_dims
from archsearch.space._dims import Categorical, Dimension

# Refuse to enumerate more than this many architectures (grid search, `enumerate`).
MAX_ENUMERATE = 1_000_000


class SpaceExhausted(Exception):
    """A strategy has proposed every architecture it can (grid done, random without repeats)."""


class SearchSpace:
    """An ordered mapping label -> dimension, with sampling, mutation, encoding, validation.

    Args:
        dims: the decisions, in order (the order is part of the space's identity).
        name: the registry name stored in every Arch of this space.
        space_args: JSON arguments that rebuild this space from the registry.
    """

    def __init__(self, dims: Mapping[str, Dimension], *, name: str = "custom",
                 space_args: Mapping[str, Any] | None = None) -> None:
        if not dims:
            raise ConfigError("a search space needs at least one dimension")
        for label in dims:
            if not isinstance(label, str) or not label:
                raise ConfigError(f"dimension labels must be non-empty strings, got {label!r}")
        self.dims: dict[str, Dimension] = dict(dims)
        self.name = name
        self.space_args: dict[str, Any] = dict(space_args or {})
        self.space_hash = hash_dims({k: d.to_json() for k, d in self.dims.items()})

    @classmethod
    def from_dims(cls, dims: Mapping[str, Dimension], *, name: str = "custom") -> SearchSpace:
        """A purely declarative space (no model): hyper-parameters, toy problems."""
        return cls(dims, name=name)

    @classmethod
    def from_builder(cls, builder: Callable[..., Any], *, name: str | None = None,
                     **kwargs: Any) -> SearchSpace:
        """A space written define-by-run; see `archsearch.space.BuilderSpace`."""
        from archsearch.space._builder import BuilderSpace

        return BuilderSpace(builder, name=name, **kwargs)

    def __repr__(self) -> str:
        size = self.size()
        shown = f"{size:,}" if isinstance(size, int) else "infinite"
        return f"{type(self).__name__}({self.name!r}, {len(self.dims)} dims, size {shown})"

    def labels(self) -> list[str]:
        return list(self.dims)

    def to_json(self) -> dict[str, Any]:
        return {label: dim.to_json() for label, dim in self.dims.items()}

    # --- size and enumeration --------------------------------------------------------
    def size(self) -> int | float:
        """The number of distinct valid architectures (exact), or `math.inf`."""
        sizes = [d.size() for d in self.dims.values()]
        if any(s == math.inf for s in sizes):
            return math.inf
        return math.prod(int(s) for s in sizes)

    def is_finite(self) -> bool:
        return self.size() != math.inf

    def enumerate(self, *, limit: int = MAX_ENUMERATE) -> Iterator[Arch]:
        """Every valid arch in a stable order (the last dimension varies fastest)."""
        size = self.size()
        if size == math.inf or size > limit:
            shown = "infinitely many" if size == math.inf else f"{size:,}"
            raise ConfigError(f"space {self.name!r} has {shown} architectures; enumerating more "
                              f"than {limit:,} is refused (use random, evolution, rl or bo)")
        labels = self.labels()
        for values in itertools.product(*(list(self.dims[lbl].grid()) for lbl in labels)):
            choices = dict(zip(labels, values, strict=True))
            if self.check(choices) is None:
                yield self._make(choices)

    # --- validity -----------------------------------------------------------------------
    def check(self, choices: Mapping[str, Any]) -> str | None:
        """Why a complete choice of values breaks the space's rules, or None if it does not.

        Only cross-dimension rules belong here; labels and values are checked by `validate`.
        """
        return None

    def allowed(self, label: str, partial: Mapping[str, Any]) -> Sequence[Any]:
        """The values of `label` that can still lead to a valid arch, given the decisions
        taken so far for the labels before it (in order). Sequential samplers (the RL
        controller) mask their softmax with it."""
        return self.dims[label].discretize()

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    def validate(self, arch: Arch, *, source: str = "architecture") -> Arch:
        """Return `arch` if it belongs to this space, else raise ArchError naming the problem."""
        if arch.space != self.name:
            raise ArchError(f"{source}: belongs to space {arch.space!r}, not {self.name!r}")
        self._check_values(arch, source)
        if arch.space_hash != self.space_hash:
            raise ArchError(f"{source}: space_hash does not match space {self.name!r} with "
                            "these settings; was it made with other space arguments?")
        return arch

    def arch(self, choices: Mapping[str, Any]) -> Arch:
        """An Arch of this space from label -> value; invalid choices raise ArchError."""
        return self.validate(self._make(choices))

    def _make(self, choices: Mapping[str, Any]) -> Arch:
        ordered = {label: choices[label] for label in self.dims if label in choices}
        ordered.update({k: v for k, v in choices.items() if k not in ordered})
        return Arch(ordered, space=self.name, space_hash=self.space_hash,
                    space_args=self.space_args)

    def _check_values(self, choices: Mapping[str, Any], source: str) -> None:
        missing = [lbl for lbl in self.dims if lbl not in choices]
        extra = [lbl for lbl in choices if lbl not in self.dims]
        if missing:
            raise ArchError(f"{source}: missing label {missing[0]!r}")
        if extra:
            raise ArchError(f"{source}: unknown label {extra[0]!r} (space {self.name!r} has "
                            f"{len(self.dims)} labels, e.g. {next(iter(self.dims))!r})")
        for label, dim in self.dims.items():
            if not dim.contains(choices[label]):
                allowed = (f"one of {', '.join(map(str, dim.choices))}"
                           if isinstance(dim, Categorical) else f"in {dim.describe()}")
                raise ArchError(f"{source}: {label} = {choices[label]!r} is not {allowed}")
        problem = self.check(choices)
        if problem is not None:
            raise ArchError(f"{source}: {problem}")

    # --- what strategies use -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """A random valid arch: uniform over the product when there is no cross-rule."""
        for _ in range(1000):
            choices = {label: dim.sample(rng) for label, dim in self.dims.items()}
            if self.check(choices) is None:
                return self._make(choices)
        raise ArchError(f"space {self.name!r}: no valid arch in 1000 random draws; "
                        "override sample()")

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """`arch` with one decision changed (uniformly chosen among those that can change)."""
        movable = [lbl for lbl, dim in self.dims.items() if dim.size() != 1]
        if not movable:
            return arch
        for _ in range(1000):
            label = movable[int(rng.integers(len(movable)))]
            choices = dict(arch)
            choices[label] = self.dims[label].mutate(arch[label], rng)
            if choices != dict(arch) and self.check(choices) is None:
                return self._make(choices)
        return arch

    def groups(self) -> list[list[str]]:
        """Labels that crossover inherits together (all from one parent): one group per label
        unless a cross-dimension rule ties labels (then the rule must hold within groups)."""
        return [[label] for label in self.dims]

    def crossover(self, first: Arch, second: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each group of labels comes from either parent with p = 1/2."""
        choices: dict[str, Any] = {}
        for group in self.groups():
            parent = first if rng.random() < 0.5 else second
            choices.update({label: parent[label] for label in group})
        return self._make(choices)

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector (one-hot for categorical, position in [0, 1] for
        numbers), in label order: the feature space of BO surrogates."""
        return np.asarray([x for label, dim in self.dims.items()
                           for x in dim.encode(arch[label])], dtype=np.float64)

    def describe(self, arch: Arch) -> str:
        """A readable one-line rendering of `arch`."""
        return ", ".join(f"{label}={arch[label]}" for label in self.dims)

    def build(self, arch: Arch, **kwargs: Any) -> Any:
        """The fixed model of `arch`; spaces without a builder have no model."""
        raise ConfigError(f"space {self.name!r} is declared without a network (from_dims); "
                          "write it with SearchSpace.from_builder to build models")
