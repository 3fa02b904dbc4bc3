"""How fast the CLI answers when it has nothing to run: `--help`, a usage error, and a config schema error.

    .venv/bin/python benchmarks/cli_startup.py --repeats 5

Each is a fresh process (`python -m pareto_search.cli`), timed from spawn to exit; the median and the fastest of
the repeats are printed (`python -X importtime -m pareto_search.cli ...` shows where the time goes). `--help` and
argument errors import no torch, Ray or MLflow; nor does a schema error (names come from trials/names.py).
A config whose schema is right loads torch to check each solver's hyperparameters with the solver's own class,
so an invalid hyperparameter *value* still takes ~1.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "--help": ["--help"],
    "usage error": ["frontier"],
    "schema error": ["run", "{bad}"],
}


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pareto_search.cli", *args], capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text("name: x\nproblem: {name: toy2d}\nsolvers: [{solver: nope}]\n")
        print(f"{'case':<14}{'median s':>9}{'min s':>8}")
        for name, argv in CASES.items():
            argv = [a.replace("{bad}", str(bad)) for a in argv]
            times = [timed(argv) for _ in range(args.repeats)]
            print(f"{name:<14}{statistics.median(times):>9.2f}{min(times):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
