"""MLflow adapter of the control plane: the only package that talks to MLflow's tracking API.

- ``client``: :class:`SearchTracker`, one search's runs in one experiment (tags, params, metrics, artifacts);
- ``params``: a config flattened into MLflow params within MLflow's limits;
- ``store``: the tracking store's address (the embedded ``./mlflow.db`` default, a moved store's artifacts);
- ``connection``: whether a failed call was an outage, and one-try-per-request HTTP settings;
- ``outage``: the queue that keeps a search's writes in order through a server outage.

Nothing is imported here, so that importing ``store`` (which the CLI needs to resolve a location) does not
import mlflow.
"""
