"""MLflow "models from code" entry point of a served pareto_search model (see `pyfunc.ParetoModel`).

MLflow copies this file into the model and runs it at load time; it names the model class instead of
pickling an instance, so loading never unpickles code.
"""

from mlflow.models import set_model

from pareto_search.serving.pyfunc import ParetoModel

set_model(ParetoModel())
