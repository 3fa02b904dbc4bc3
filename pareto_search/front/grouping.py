"""Task grouping from inter-task affinities under a network budget (TAG; Fifty et al. 2021,
"Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS, §3.2).

Given the affinity matrix Z (row = source i, column = target j; usually summed over training, see
trials/affinity.py) and a budget of B networks, choose at most B groups of tasks (each group is
one network trained on its tasks; groups may overlap) so that every task is served by the group
that helps it most, maximizing

    Σ_j max_{G ∋ j} score_j(G),     score_j(G) = mean_{i ∈ G, i ≠ j} Z(i→j).

A task alone in a group gets score 0: it receives no transfer, helpful or harmful, and 0 is the
neutral point of an affinity (its sign is its meaning). TAG's code scores only groups of two or
more tasks (so a task can never be isolated); allowing singletons lets a task that every partner
hurts get a network of its own, which is what a budget is for. ``allow_singletons=False`` restores
the code's rule. TAG averages over tasks instead of summing: the same argmax.

Exact search, no heuristics: a chosen set of groups with each task assigned to its serving group
is the same as a partition of the tasks into at most B blocks S, each valued at
best(S) = max_{G ⊇ S} Σ_{j∈S} score_j(G) (a group serving nothing can be dropped: scores depend
only on the group itself). best(S) for all S costs O(2^T · 2^T · T) with numpy, the partition DP
O(B · 3^T): fractions of a second for T = 10. Larger T is refused (the search is exponential).
Ties go to fewer groups, then to the first group in enumeration order (bit masks ascending).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

MAX_TASKS = 10  # 2^10 groups × 2^10 served sets: the exhaustive search stays well under a second
SINGLETON_SCORE = 0.0  # a task alone receives no transfer


class GroupingError(ValueError):
    """Invalid grouping input; the message names the argument, the value and what is allowed."""


@dataclass(frozen=True)
class Group:
    """One network: trained on ``tasks``, used at serving time for ``serves`` (a subset; the other
    tasks are there as helpers), with score_j of this group for each served task."""

    tasks: tuple[int, ...]
    serves: tuple[int, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class Grouping:
    groups: tuple[Group, ...]
    task_scores: tuple[float, ...]  # per task: score of the group serving it
    total: float  # Σ_j task_scores[j], the maximized objective

    def serving_group(self, task: int) -> Group:
        return next(g for g in self.groups if task in g.serves)


def group_score(affinity: ArrayLike, group: Sequence[int], target: int) -> float:
    """score_target(group): the mean affinity from the group's other tasks onto ``target``."""
    z = np.asarray(affinity, dtype=float)
    others = [i for i in group if i != target]
    if target not in group:
        raise GroupingError(f"`target` must be a task of the group {list(group)}, found {target}")
    return float(np.mean(z[others, target])) if others else SINGLETON_SCORE


def _check(affinity: ArrayLike, budget: int) -> np.ndarray:
    z = np.asarray(affinity, dtype=float)
    if z.ndim != 2 or z.shape[0] != z.shape[1] or z.shape[0] == 0:
        raise GroupingError(f"`affinity` must be a square T×T matrix with T >= 1, found shape {z.shape}")
    if z.shape[0] > MAX_TASKS:
        raise GroupingError(
            f"`affinity` has {z.shape[0]} tasks; the exhaustive grouping search allows at most {MAX_TASKS}"
        )
    if not np.isfinite(z).all():
        raise GroupingError("`affinity` must hold finite numbers, found NaN or infinity")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise GroupingError(f"`budget` must be an integer >= 1, found {budget!r}")
    return z


def _members(mask: int, num_tasks: int) -> list[int]:
    return [t for t in range(num_tasks) if mask >> t & 1]


def select_groups(affinity: ArrayLike, budget: int, *, allow_singletons: bool = True) -> Grouping:
    """The best grouping of the T tasks of ``affinity`` (Z[i, j] = Z(i→j)) into at most ``budget`` networks."""
    z = _check(affinity, budget)
    num_tasks = z.shape[0]
    if not allow_singletons and num_tasks < 2:
        raise GroupingError("`affinity` has 1 task: without singleton groups no group can be formed")
    masks = np.arange(1, 1 << num_tasks)
    member = (masks[:, None] >> np.arange(num_tasks)) & 1  # (groups, T) 0/1
    sizes = member.sum(1)
    if not allow_singletons:
        masks, member, sizes = masks[sizes >= 2], member[sizes >= 2], sizes[sizes >= 2]
    # score[g, j] = mean over i in g, i != j, of z[i, j]; 0 for a singleton; unused where j ∉ g.
    off_diagonal = z - np.diag(np.diag(z))
    inflow = member @ off_diagonal  # (groups, T): Σ_{i ∈ g} z[i, j] without i = j
    others = (sizes[:, None] - member).clip(min=1)
    score = np.where(sizes[:, None] > 1, inflow / others, SINGLETON_SCORE) * member
    # value[g, s] = Σ_{j ∈ s} score[g, j] where s ⊆ g; best(s) over g.
    subsets = np.arange(1 << num_tasks)
    indicator = (subsets[:, None] >> np.arange(num_tasks)) & 1  # (2^T, T)
    value = score @ indicator.T  # (groups, 2^T)
    contained = (subsets[None, :] & ~masks[:, None]) == 0
    value = np.where(contained, value, -np.inf)
    best_group = value.argmax(0)  # first maximizer: lowest mask
    best = value[best_group, subsets]
    # Partition DP: f[m] = best total over partitions of m into at most b blocks.
    full = (1 << num_tasks) - 1
    f = np.full(1 << num_tasks, -np.inf)
    f[0] = 0.0
    choices: list[dict[int, int]] = []
    for _ in range(min(budget, num_tasks)):
        new, choice = f.copy(), {}
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            while True:  # every block containing the lowest task of mask
                block = sub | low
                candidate = best[block] + f[mask ^ block]
                if candidate > new[mask]:
                    new[mask], choice[mask] = candidate, block
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        f = new
        choices.append(choice)
    if not np.isfinite(f[full]):  # only possible without singletons and a budget too small
        raise GroupingError(f"`budget` {budget} cannot cover {num_tasks} tasks with groups of two or more")
    blocks: dict[int, list[int]] = {}  # group mask -> served tasks
    mask = full
    for choice in reversed(choices):
        if mask == 0:
            break
        chosen = choice.get(mask)
        if chosen is None:  # the same cover with one block fewer was as good
            continue
        blocks.setdefault(int(masks[best_group[chosen]]), []).extend(_members(chosen, num_tasks))
        mask ^= chosen
    row_of = {int(m): r for r, m in enumerate(masks)}
    groups = []
    task_scores = [0.0] * num_tasks
    for group_mask, served in sorted(blocks.items(), key=lambda item: min(item[1])):
        served = sorted(served)
        scores = tuple(float(score[row_of[group_mask], j]) for j in served)
        for j, s in zip(served, scores, strict=True):
            task_scores[j] = s
        groups.append(Group(tuple(_members(group_mask, num_tasks)), tuple(served), scores))
    return Grouping(tuple(groups), tuple(task_scores), float(sum(task_scores)))
