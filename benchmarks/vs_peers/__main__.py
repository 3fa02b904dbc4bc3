"""``python benchmarks/vs_peers ...`` or ``python -m benchmarks.vs_peers ...``: the benchmark's command line (and,
with ``--libmoon-job``, the worker that runs inside LibMOON's venv)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a folder, Python puts this folder first on the path: its modules (cli, methods, report, ...) would then
# shadow any top-level module of those names. The folder above makes the package importable as `vs_peers` instead,
# the name its pool workers and Ray's workers import it by (their PYTHONPATH holds benchmarks/).
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path[0] = str(HERE.parent)
else:
    sys.path.insert(0, str(HERE.parent))

from vs_peers.cli import main  # noqa: E402  (after the path above)

if __name__ == "__main__":
    sys.exit(main())
