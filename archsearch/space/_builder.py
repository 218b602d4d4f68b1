"""`BuilderSpace`: a search space written define-by-run, as one builder function.

```python
def tiny_chain(c, *, width=16, depth=3, num_classes=10):
    layers = [nn.Conv2d(3, width, 3, padding=1)]
    for i in range(depth):
        layers.append(c.op(f"block{i}.op", {"conv3": partial(conv, width, 3),
                                            "skip": nn.Identity}))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))

space = SearchSpace.from_builder(tiny_chain, name="tiny_chain", depth=3)
model = space.build(space.sample(rng))          # a plain nn.Module
supernet = space.build_supernet()              # every c.op a softmax-weighted MixedOp
```

The dry run at construction records the dimensions; building an Arch replays the same
function with the arch's values. Keyword arguments given at construction define the space
(they are its `space_args`); `build(arch, **overrides)` may change the others (say
`num_classes`) as long as the decisions stay the same, which is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from archsearch.errors import ArchError, ConfigError
from archsearch.space._arch import Arch
from archsearch.space._chooser import FixedChooser, RecordingChooser
from archsearch.space._space import SearchSpace


class BuilderSpace(SearchSpace):
    """A SearchSpace whose dimensions come from a dry run of `builder(c, **kwargs)`."""

    def __init__(self, builder: Callable[..., Any], *, name: str | None = None,
                 **kwargs: Any) -> None:
        recorder = RecordingChooser()
        try:
            builder(recorder, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"space {name or builder.__name__!r}: {exc}") from None
        super().__init__(recorder.dims, name=name or builder.__name__, space_args=kwargs)
        self.builder = builder
        self.op_labels = tuple(recorder.op_labels)

    def build(self, arch: Arch, **overrides: Any) -> Any:
        """The fixed model of `arch` (only the chosen candidates are constructed)."""
        self.validate(arch)
        chooser = FixedChooser(arch)
        model = self.builder(chooser, **{**self.space_args, **overrides})
        chooser.finish()
        return model

    def build_supernet(self, **overrides: Any) -> Any:
        """The one-shot supernet: every `c.op` becomes a MixedOp with its own α row."""
        from archsearch.supernet.builder import BuilderSupernet, SupernetChooser

        chooser = SupernetChooser()
        model = self.builder(chooser, **{**self.space_args, **overrides})
        return BuilderSupernet(model, chooser.mixed_ops)

    def derive(self, alphas: Mapping[str, Any]) -> Arch:
        """The discrete arch of relaxed weights: per op label, the op of largest α.

        Args:
            alphas: label -> α row (one weight per candidate, in candidate order).
        """
        if set(self.dims) != set(self.op_labels):
            value_labels = [lbl for lbl in self.dims if lbl not in self.op_labels]
            raise ArchError(f"space {self.name!r} has value decisions ({value_labels[0]!r}); "
                            "only op decisions can be derived from α")
        choices = {}
        for label in self.op_labels:
            row = np.asarray(alphas[label], dtype=np.float64)
            options = self.dims[label].discretize()
            if row.shape != (len(options),):
                raise ArchError(f"α of {label} has shape {row.shape}, expected "
                                f"({len(options)},)")
            choices[label] = options[int(row.argmax())]
        return self.arch(choices)
