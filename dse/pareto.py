"""Multi-objective primitives on objective vectors, every objective minimised: dominance,
non-dominated sorting, NSGA-II's crowding distance and exact hypervolume.

The bottom layer: numpy only. ASHA ranks its rungs with these (:mod:`dse.sweep.asha`),
and the results layer draws and tabulates fronts with them
(:func:`dse.results.analysis.pareto_front`), so a sweep's status, its plots and its
scheduler agree on what the front is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Point = Sequence[float]  # one objective vector, every objective to be minimised


def dominance(points: Sequence[Point] | np.ndarray) -> np.ndarray:
    """``[q, p]`` is True where point ``q`` dominates point ``p`` (all objectives minimised):
    one vectorised comparison, so sorting thousands of trials stays fast.

    >>> dominance([(1, 2), (2, 2), (1, 3)]).astype(int).tolist()
    [[0, 1, 1], [0, 0, 0], [0, 0, 0]]
    """
    values = np.asarray(points, float)
    if values.ndim != 2:  # no points (or a flat list): nothing dominates anything
        return np.zeros((len(values), len(values)), bool)
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)
    return no_worse & better


def minimised(values: Sequence[float | None], goals: Sequence[str]) -> tuple[float, ...]:
    """An objective vector turned to minimise every objective; a missing or non-finite value is the worst.

    >>> minimised([0.9, 0.05, float("nan")], ["maximize", "minimize", "maximize"])
    (-0.9, 0.05, inf)
    """
    out = []
    for value, goal in zip(values, goals, strict=True):
        finite = value is not None and math.isfinite(value)
        out.append((-value if goal == "maximize" else value) if finite else math.inf)
    return tuple(out)


def non_dominated(points: Sequence[Point] | np.ndarray) -> np.ndarray:
    """A boolean mask of the points no other point dominates: the first front.

    >>> non_dominated([(1, 2), (2, 2), (2, 1)]).tolist()
    [True, False, True]
    """
    return ~dominance(points).any(axis=0)


def pareto_fronts(points: Sequence[Point]) -> list[int]:
    """The front index of each point: 0 for the non-dominated, 1 for those only the first front dominates, ...

    >>> pareto_fronts([(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (2, 2)])
    [0, 0, 0, 1, 2, 0]
    """
    dominates_matrix = dominance(points)
    dominators = dominates_matrix.sum(axis=0)  # how many unassigned points dominate each one
    front = np.full(len(points), -1)
    index = 0
    while (front < 0).any():
        current = (front < 0) & (dominators == 0)
        front[current] = index
        dominators = dominators - dominates_matrix[current].sum(axis=0)
        index += 1
    return front.tolist()


def crowding_distances(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within one front: the normalised size of the
    box its neighbours span in every objective; the extremes of each objective get infinity.

    Equal points get one distance (computed once, over the distinct points), so the order
    the points came in does not matter.

    >>> crowding_distances([(0, 4), (1, 2), (2, 1), (4, 0)])
    [inf, 1.25, 1.25, inf]
    >>> crowding_distances([(0, 4), (1, 2), (1, 2), (4, 0)])
    [inf, 2.0, 2.0, inf]
    """
    distinct = sorted(set(map(tuple, points)))
    distance = dict.fromkeys(distinct, 0.0)
    if len(distinct) <= 2:
        return [math.inf] * len(points)
    for j in range(len(distinct[0])):
        ordered = sorted(distinct, key=lambda p: (p[j], p))
        span = ordered[-1][j] - ordered[0][j]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if span == 0:
            continue
        for before, point, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            gap = after[j] - before[j]
            distance[point] += gap / span if math.isfinite(gap) else math.inf
    return [distance[tuple(p)] for p in points]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume the points dominate (all objectives minimised) up to ``reference``, by slicing
    along the last objective; points not strictly better than ``reference`` everywhere add nothing.
    Exact and simple, for the tens to hundreds of vectors a rung holds.

    >>> hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4))  # a staircase: 3 + 2 + 1
    6.0
    >>> hypervolume([(1, 1, 1), (2, 2, 0)], (3, 3, 3))  # boxes 2*2*2 and 1*1*3, overlapping in 1*1*2
    9.0
    """
    ref = np.asarray(reference, float)
    inside = [p for p in np.asarray(points, float).reshape(-1, len(ref)) if (p < ref).all()]
    if not inside:
        return 0.0
    if len(ref) == 1:
        return float(ref[0] - min(p[0] for p in inside))
    if len(ref) == 2:  # the staircase in one sorted pass, so a front of hundreds stays fast
        volume, lowest = 0.0, ref[1]
        for x, y in sorted(map(tuple, inside)):
            if y < lowest:
                volume += (ref[0] - x) * (lowest - y)
                lowest = y
        return float(volume)
    inside.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(inside):  # the slab from this point's last value to the next one's
        top = inside[i + 1][-1] if i + 1 < len(inside) else ref[-1]
        if top > point[-1]:
            volume += (top - point[-1]) * hypervolume([p[:-1] for p in inside[:i + 1]], ref[:-1])
    return float(volume)


def hypervolume_contributions(points: Sequence[Point], reference: Point) -> list[float]:
    """Each point's exclusive hypervolume: what the set loses without it (equal points get
    the contribution of their one distinct vector, so the order they came in does not matter).

    >>> hypervolume_contributions([(1, 3), (2, 2), (3, 1), (2, 2)], (4, 4))
    [1.0, 1.0, 1.0, 1.0]
    >>> hypervolume_contributions([(0, 4), (1, 2), (2, 1), (4, 0)], (5, 5))  # extremes get finite shares
    [1.0, 2.0, 2.0, 1.0]
    """
    distinct = sorted(set(map(tuple, points)))
    whole = hypervolume(distinct, reference)
    share = {p: whole - hypervolume([q for q in distinct if q != p], reference) for p in distinct}
    return [share[tuple(p)] for p in points]
