"""pareto_search: the control plane of a Pareto search service for multi-task learning.

Config schema, Ray Tune adapter, Pareto math (pymoo), tracking (MLflow), selection and registry,
Ray Jobs submission and the CLI. The data plane (what runs inside a trial) lives in `trials`.

The Python API (docs/api.md) is here: ``run``, ``resume``, ``open_search`` and the ``Search`` they return.
Importing the package stays cheap: torch, Ray and MLflow load inside the functions that use them.
"""

from pareto_search.api import DEFAULT_ALIAS, Point, Search, open_search, resume, run
from pareto_search.errors import ConfigError, SearchStopped

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ALIAS",
    "ConfigError",
    "Point",
    "Search",
    "SearchStopped",
    "__version__",
    "open_search",
    "resume",
    "run",
]
