"""The data plane of pareto_search: what runs inside one trial.

Pure PyTorch (+ numpy): problems, solvers, the population of K subproblems with parameter
transfer, and the training loop. Nothing here imports Ray or MLflow.
"""
