"""Serving: a chosen front member (or the whole front) as a registered MLflow pyfunc model.

`network` rebuilds a member's network, `pyfunc` is the served model, `package` writes its folder,
`registry` logs and registers it, `publish` runs the whole `select --register` path. The MLflow
imports of serving live in this package (`pyfunc`, `package`, `registry`, `model_code`).
"""
