"""pareto_search: the control plane of a Pareto search service for multi-task learning.

Config schema, Ray Tune adapter, Pareto math (pymoo), tracking (MLflow), selection and registry,
Ray Jobs submission and the CLI. The data plane (what runs inside a trial) lives in `trials`.
"""

__version__ = "0.1.0"
