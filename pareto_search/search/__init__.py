"""The Ray Tune adapter: the only place (with the Pareto scheduler) that imports Ray.

``space`` turns config distributions into Tune's sampling primitives, ``trainable`` runs one
trial inside a Ray worker, ``callback`` keeps the global front and MLflow up to date from the
driver, and ``runner`` builds the Tuner and runs, resumes or inspects a search.
"""
