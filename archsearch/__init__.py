"""archsearch: neural architecture search that runs on a laptop and hands over usable networks.

The curated surface; everything else lives in the subpackages.
"""

from __future__ import annotations

from archsearch import data as data
from archsearch import evaluators as evaluators
from archsearch import hardware as hardware
from archsearch import spaces as spaces
from archsearch import strategies as strategies
from archsearch._loop import Budget as Budget
from archsearch._loop import Objective as Objective
from archsearch._loop import search as search
from archsearch._version import __version__ as __version__
from archsearch.errors import ArchsearchError as ArchsearchError
from archsearch.networks import DartsNetwork as DartsNetwork
from archsearch.space import Arch as Arch
from archsearch.space import Categorical as Categorical
from archsearch.space import Chooser as Chooser
from archsearch.space import Float as Float
from archsearch.space import Int as Int
from archsearch.space import SearchSpace as SearchSpace
from archsearch.spaces import SPACES as SPACES
from archsearch.spaces import DartsCellSpace as DartsCellSpace
from archsearch.strategies import DARTS as DARTS
from archsearch.strategies import STRATEGIES as STRATEGIES
from archsearch.supernet import BilevelOptimizer as BilevelOptimizer
from archsearch.supernet import DartsSupernet as DartsSupernet
from archsearch.train import Trainer as Trainer

__all__ = [
    "DARTS",
    "SPACES",
    "STRATEGIES",
    "Arch",
    "ArchsearchError",
    "BilevelOptimizer",
    "Budget",
    "Categorical",
    "Chooser",
    "DartsCellSpace",
    "DartsNetwork",
    "DartsSupernet",
    "Float",
    "Int",
    "Objective",
    "SearchSpace",
    "Trainer",
    "__version__",
    "data",
    "evaluators",
    "hardware",
    "search",
    "spaces",
    "strategies",
]
