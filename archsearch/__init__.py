"""archsearch: neural architecture search that runs on a laptop and hands over usable networks.

The curated surface; everything else lives in the subpackages.
"""

from __future__ import annotations

from archsearch import data as data
from archsearch import hardware as hardware
from archsearch import spaces as spaces
from archsearch import strategies as strategies
from archsearch._version import __version__ as __version__
from archsearch.errors import ArchsearchError as ArchsearchError
from archsearch.networks import DartsNetwork as DartsNetwork
from archsearch.space import Arch as Arch
from archsearch.space import Categorical as Categorical
from archsearch.spaces import DartsCellSpace as DartsCellSpace
from archsearch.strategies import DARTS as DARTS
from archsearch.supernet import BilevelOptimizer as BilevelOptimizer
from archsearch.supernet import DartsSupernet as DartsSupernet
from archsearch.train import Trainer as Trainer

__all__ = [
    "DARTS",
    "Arch",
    "ArchsearchError",
    "BilevelOptimizer",
    "Categorical",
    "DartsCellSpace",
    "DartsNetwork",
    "DartsSupernet",
    "Trainer",
    "__version__",
    "data",
    "hardware",
    "spaces",
    "strategies",
]
