"""Asynchronous successive halving (ASHA) for one objective or several.

Optuna's pruners rank one intermediate value (multi-objective pruning is optuna#3450),
so dse decides itself, in the worker, each epoch:

- Rungs are epochs ``min_epochs * reduction_factor**k`` below the longest run
  (:func:`rung_epochs`); a trial is judged at the rungs below its own epochs.
- When a trial reaches rung ``k`` its objective vector (per-epoch metrics as of that
  epoch, static ones from the spec) is recorded in the study, so every worker sees it.
- Vectors at a rung are ordered by Pareto front (non-dominated sorting), then within a
  front by hypervolume contribution (``tie_break: hypervolume``, the default: the area only
  that vector dominates, up to a point just past the rung's worst values, or out to the
  sweep's constraint where one bounds an objective) or by NSGA-II's
  crowding distance (``tie_break: crowding``); larger first. A trial's position is how
  many vectors are strictly ahead of it, so equal vectors share one (:func:`positions`).
  With one objective this is ASHA's ranking. Crowding distance gives every front's
  extremes infinity, so they tie at the top: with two objectives a front's smallest and its
  most accurate candidate both go on wherever one place is free, and a rung passes more
  than one in ``reduction_factor`` (measured in ``bench/sweep_efficiency.md``: 4-5 of
  23-25 candidates trained to the end, not 2-3). Hypervolume contributions are finite and
  rarely tie.
- Of the ``n`` runs recorded at a rung, those at positions below ``floor(n / reduction_factor)``
  are promotable (:func:`kept_count`). A trial that arrives at a rung promotable goes on at
  once; any other one *pauses*: it ends as pruned, keeps its checkpoint and its last
  rung's metrics (a low-fidelity point on the plots), and may be promoted later.
- Before a worker starts a new candidate it promotes a paused one, if any has become
  promotable since (more trials reached its rung), highest rung first
  (:func:`enqueue_promotion`): a new trial with the same values that resumes the paused
  trial's checkpoint, never trains from scratch. The paused trial then shows as
  ``promoted``.

This is ASHA as Li et al. (2020) wrote it: nothing waits for a rung to fill, and the
first trials at a rung do not go on merely for being first (``floor``: with fewer than
``reduction_factor`` trials at a rung, none is promotable yet).

Under a wall-clock budget dse adds an end (:func:`enqueue_finish`): once a new candidate could
no longer train all its epochs before the budget ends (:class:`Pace` estimates how long that
takes, from the study's own trials), no new candidate starts. A worker instead promotes a paused
trial *to the end* (it records its vectors at the rungs above but never pauses again): the best
one, highest rung first, then by position, among those whose remaining epochs fit in the time
left; when none fits, the worker stops. Without it the last minutes went to candidates that paused
after one epoch, and the front at the budget held only the few trials that had passed every rung
(``bench/sweep_efficiency.md``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from dse.contract import TrialAttr
from dse.pareto import Point, crowding_distances, hypervolume_contributions, minimised, pareto_fronts

if TYPE_CHECKING:
    import optuna

    from dse.sweep.config import SweepConfig



def rung_epochs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which trials are judged: ``min_epochs * reduction_factor**k`` below ``max_epochs``.

    >>> rung_epochs(1, 3, 9), rung_epochs(1, 3, 10), rung_epochs(2, 2, 16), rung_epochs(4, 3, 4)
    ([1, 3], [1, 3, 9], [2, 4, 8], [])
    """
    rungs, epoch = [], min_epochs
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= reduction_factor
    return rungs


def reference_point(points: Sequence[Point], bounds: Sequence[float | None] | None = None) -> tuple[float, ...]:
    """The point contributions are measured to: per objective, a tenth of the span (or 1 where all
    are equal) past the rung's worst finite value, so the worst values still bound some volume;
    where the sweep bounds that objective (``bounds``, minimised like the points: a constraint's
    max, or minus its min), at least that bound. The bound is the region the user asked about:
    without it, the most accurate and largest candidate of a front is measured against a size
    just past its own and counts for little (bench/sweep_efficiency.md).

    >>> points = [(-0.9, 0.2), (-0.8, 0.6), (float("inf"), 0.4)]
    >>> [round(value, 6) for value in reference_point(points)]
    [-0.79, 0.64]
    >>> [round(value, 6) for value in reference_point(points, (None, 1.0))]  # size <= 1 MB
    [-0.79, 1.0]
    >>> [round(value, 6) for value in reference_point(points, (-0.95, 0.5))]  # tighter than the values: ignored
    [-0.79, 0.64]
    """
    values = np.asarray(points, float)
    bounds = bounds if bounds is not None else [None] * values.shape[1]
    reference = []
    for column, bound in zip(values.T, bounds, strict=True):
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            reference.append(0.0 if bound is None else float(bound))
            continue
        span = finite.max() - finite.min()
        past_worst = float(finite.max() + (span / 10 if span > 0 else 1.0))
        reference.append(past_worst if bound is None else max(past_worst, float(bound)))
    return tuple(reference)


def reference_bounds(sweep: SweepConfig) -> tuple[float | None, ...]:
    """The sweep's constraint bound on each objective, minimised like the objective vectors
    (a maximised metric's ``min`` negated), or None where no constraint bounds it; the
    loosest where several do (every feasible value lies inside it)."""
    bounds = []
    for objective in sweep.objectives:
        if objective.goal == "minimize":
            limits = [c.max for c in sweep.constraints if c.metric == objective.metric and c.max is not None]
        else:
            limits = [-c.min for c in sweep.constraints if c.metric == objective.metric and c.min is not None]
        bounds.append(max(limits) if limits else None)
    return tuple(bounds)


TieBreak = Literal["hypervolume", "crowding"]  # the schema's pruner.tie_break
TIE_BREAKS = get_args(TieBreak)


def positions(points: Sequence[Point], tie_break: TieBreak = "hypervolume",
              bounds: Sequence[float | None] | None = None) -> list[int]:
    """How many points are strictly ahead of each one, by front and then, within a front, by
    ``tie_break``: hypervolume contribution (to :func:`reference_point` of all the points and
    ``bounds``) or crowding distance, larger first; equal points share a position.

    >>> points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4)]  # a front of three, then two behind
    >>> positions(points)  # front contributions up to (5.4, 5.4): 0.4, 9.0, 0.4
    [1, 0, 1, 3, 4]
    >>> positions(points, "crowding")  # the two extremes (infinite distance) tie ahead of the middle
    [0, 2, 0, 3, 4]
    >>> positions([(0.10,), (0.30,), (0.20,), (0.20,)])  # one objective: plain ranking, ties shared
    [0, 3, 1, 1]
    >>> positions(points, bounds=(None, 10))  # up to (5.4, 10): (1, 5) now adds 1 * 5, ahead of (5, 1)'s 0.4
    [1, 0, 2, 3, 4]
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if len(points) == 0:  # a rung nobody reached yet
        return []
    fronts = pareto_fronts(points)
    reference = reference_point(points, bounds) if tie_break == "hypervolume" else None  # one for the whole rung
    score = [0.0] * len(points)
    for front in set(fronts):
        members = [i for i, f in enumerate(fronts) if f == front]
        front_points = [points[i] for i in members]
        scores = (crowding_distances(front_points) if tie_break == "crowding"
                  else hypervolume_contributions(front_points, reference))
        for i, value in zip(members, scores, strict=True):
            score[i] = value
    keys = [(f, -c) for f, c in zip(fronts, score, strict=True)]
    ordered = sorted(keys)
    return [bisect.bisect_left(ordered, key) for key in keys]  # how many keys are strictly smaller


def kept_count(n: int, reduction_factor: int) -> int:
    """How many of ``n`` trials at a rung are promotable: ``floor(n / reduction_factor)``.

    >>> [kept_count(n, 3) for n in range(1, 8)]
    [0, 0, 1, 1, 1, 2, 2]
    """
    return n // reduction_factor


# ---------------------------------------------------------------- the study as shared rung records

STOPPED_AT = "asha:stopped_at"  # trial system attr: the rung index where ASHA paused the trial
PROMOTED_FROM = "promoted_from"  # user attr of a promotion: the paused trial it continues (a results column)
PROMOTION = "asha_promotion"  # user attr of a promotion: "<run>@<rung>"; one promotion per paused run and rung
FINISH = "asha_finish"  # user attr of a promotion at the budget's end: it trains to the end, never paused again


RUNG_ATTR_PREFIX = "asha:rung_"


def rung_attr(rung: int) -> str:
    """The trial system attr holding its record at ``rung``: ``{"run": run key, "values": [...]}``."""
    return f"{RUNG_ATTR_PREFIX}{rung}"


def promotion_key(run: str, rung: int) -> str:
    return f"{run}@{rung}"


def records_at(trials: Sequence[optuna.trial.FrozenTrial], rung: int) -> dict[str, optuna.trial.FrozenTrial]:
    """The first trial (by number) that recorded each run at ``rung``."""
    records: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        record = trial.system_attrs.get(rung_attr(rung))
        if record is not None:
            records.setdefault(record["run"], trial)
    return records


def ranked(records: dict[str, optuna.trial.FrozenTrial], rung: int, sweep: SweepConfig) -> tuple[dict[str, int], int]:
    """Each recorded run's position at ``rung`` and how many positions are promotable."""
    runs = list(records)
    goals = [o.goal for o in sweep.objectives]
    points = [minimised(records[run].system_attrs[rung_attr(rung)]["values"], goals) for run in runs]
    order = positions(points, sweep.pruner.tie_break, reference_bounds(sweep))
    return dict(zip(runs, order, strict=True)), kept_count(len(points), sweep.pruner.reduction_factor)


def promoted_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    """The numbers of the paused trials that a later trial continues."""
    return {t.user_attrs[PROMOTED_FROM] for t in trials if PROMOTED_FROM in t.user_attrs}


def duplicate_of(trials: Sequence[optuna.trial.FrozenTrial], trial: optuna.trial.FrozenTrial) -> int | None:
    """The earlier trial that already is ``trial``'s promotion, if two workers promoted one paused
    trial at the same moment (each saw it unpromoted); the earlier one is the promotion."""
    key = trial.user_attrs.get(PROMOTION)
    if key is None:
        return None
    return next((t.number for t in sorted(trials, key=lambda t: t.number)
                 if t.number < trial.number and t.user_attrs.get(PROMOTION) == key), None)


@dataclass(frozen=True)
class Paused:
    """A trial ASHA paused at a rung and nobody has promoted from there yet."""

    trial: optuna.trial.FrozenTrial
    run: str
    rung: int
    epoch: int  # the rung's epoch: how many epochs its run has trained
    position: int  # how many runs at the rung are ahead of it
    promotable: bool  # within floor(n / reduction_factor) of the rung


def paused_trials(study: optuna.Study, sweep: SweepConfig) -> Iterator[Paused]:
    """Every paused, unpromoted trial, highest rung first, then by position (best first); a rung
    is ranked only when the caller reads past the rung above it."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs[PROMOTION] for t in trials if PROMOTION in t.user_attrs}
    rungs = rung_epochs(sweep.pruner.min_epochs, sweep.pruner.reduction_factor, sweep.max_epochs())
    for rung in reversed(range(len(rungs))):
        records = records_at(trials, rung)
        position_of, kept = ranked(records, rung, sweep)
        yield from sorted((Paused(records[run], run, rung, rungs[rung], position, position < kept)
                           for run, position in position_of.items()
                           if records[run].state == optuna.trial.TrialState.PRUNED
                           and records[run].system_attrs.get(STOPPED_AT) == rung
                           and promotion_key(run, rung) not in taken),
                          key=lambda p: (p.position, p.trial.number))


def _promote(study: optuna.Study, paused: Paused, finish: bool = False) -> optuna.trial.FrozenTrial:
    """Enqueue the continuation of ``paused``: a WAITING trial with the same values (so the same
    run and checkpoint), popped like any other."""
    attrs = {PROMOTED_FROM: paused.trial.number, PROMOTION: promotion_key(paused.run, paused.rung)}
    study.enqueue_trial(paused.trial.params, user_attrs={**attrs, FINISH: True} if finish else attrs,
                        skip_if_exists=False)
    return paused.trial


def enqueue_promotion(study: optuna.Study, sweep: SweepConfig) -> optuna.trial.FrozenTrial | None:
    """Enqueue the continuation of the best paused trial that is promotable now, highest rung first;
    returns the paused trial, or None if there is none."""
    best = next((p for p in paused_trials(study, sweep) if p.promotable), None)
    return _promote(study, best) if best else None


def epochs_trained(trials: Sequence[optuna.trial.FrozenTrial]) -> Iterator[tuple[optuna.trial.FrozenTrial, str, float, int]]:
    """Each finished trial that trained, by number, with its run, the run's mean epoch train time as
    of that trial, and how many epochs the trial trained itself: a promotion (or a retry) replays
    its run's earlier epochs from the checkpoint, and those are not trained again."""
    epochs_done: dict[str, int] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        history, run = trial.user_attrs.get(TrialAttr.HISTORY), trial.user_attrs.get(TrialAttr.RUN)
        times = [record["epoch_train_s"] for record in history or () if "epoch_train_s" in record]
        if not times or run is None or trial.datetime_start is None or trial.datetime_complete is None:
            continue  # running, never trained (infeasible, duplicate) or from a worker that wrote no history
        before, last = epochs_done.get(run, 0), history[-1]["epoch"]
        epochs_done[run] = max(before, last)
        yield trial, run, sum(times) / len(times), max(0, last - before)


@dataclass(frozen=True)
class Pace:
    """How long a trial takes in this study, from its finished trials: a run's epochs at its own
    measured train time (candidates differ 2x in speed), plus what a trial costs besides training,
    fitted over the trials as a fixed part (compile, restore, test evaluation) and a part per
    epoch (validation, checkpoint). On the 53 trials that trained 5 or more epochs in the
    committed asha runs (``bench/pace_estimate.py``), predicted against actual duration, from
    the trials finished before each started: median 1.00, range 0.71-1.42 (46 trials before
    the runs made with it: 1.01). Busy seconds per epoch, compiles of 1-epoch trials included,
    predicted 1.24, 0.91-1.74: it stopped starting candidates minutes too early."""

    fixed_s: float
    per_epoch_s: float  # besides training
    epoch_train_s: dict[str, float]  # run -> its mean epoch train time

    def seconds(self, epochs: int, run: str | None = None) -> float:
        """How long a trial that trains ``epochs`` more epochs of ``run`` takes (a new candidate: the mean run)."""
        known = self.epoch_train_s
        train_s = known.get(run, sum(known.values()) / len(known))
        return self.fixed_s + epochs * (train_s + self.per_epoch_s)

    @classmethod
    def of(cls, trials: Sequence[optuna.trial.FrozenTrial]) -> Pace | None:
        """The pace of the finished trials that trained, or None before any did."""
        epoch_train_s: dict[str, float] = {}
        trained, rest = [], []  # per trial: epochs it trained itself, and its seconds besides their training
        for trial, run, train_s, epochs in epochs_trained(trials):
            epoch_train_s[run] = train_s
            if epochs > 0:
                seconds = trial.duration.total_seconds()
                trained.append(epochs)
                rest.append(seconds - epochs * train_s)
        if not trained:
            return None
        per_epoch = 0.0
        if len(set(trained)) > 1:  # a line through (epochs, rest); else all of it is fixed
            per_epoch = max(0.0, float(np.polyfit(trained, rest, 1)[0]))
        fixed = max(0.0, float(np.mean(rest) - per_epoch * np.mean(trained)))
        return cls(fixed, per_epoch, epoch_train_s)


def finishing(study: optuna.Study, sweep: SweepConfig, seconds_left: float) -> Pace | None:
    """The study's pace if a new candidate could no longer train all its epochs in ``seconds_left``
    (the budget's end has come), else None (no pace known yet, or time enough)."""
    pace = Pace.of(study.get_trials(deepcopy=False))
    return pace if pace is not None and pace.seconds(sweep.max_epochs()) > seconds_left else None


def enqueue_finish(study: optuna.Study, sweep: SweepConfig, seconds_left: float, pace: Pace) -> optuna.trial.FrozenTrial | None:
    """At the budget's end: enqueue a promotion to the end of the best paused trial (highest rung,
    then position) whose remaining epochs fit in ``seconds_left``; returns it, or None if none fits.
    Remaining epochs count to the sweep's longest run, so a candidate with fewer errs long."""
    for paused in paused_trials(study, sweep):
        if pace.seconds(sweep.max_epochs() - paused.epoch, paused.run) <= seconds_left:
            return _promote(study, paused, finish=True)
    return None


@dataclass
class Rungs:
    """ASHA for one trial: records its vector at each rung in the study and says whether it pauses.

    Records live in trial system attributes, written through the study's storage, so workers
    on one journal file or one PostgreSQL database see each other's. Records are keyed by
    the trial's run (its candidate and seed, where its checkpoint lives): a promotion or a
    retry that resumes a run's checkpoint replays its epochs without recording them again,
    and takes the earlier decision at the rungs the run already passed (so do repeated
    suggestions of one candidate), a promotion passing the rung it was promoted from.
    """

    study: optuna.Study
    trial: optuna.Trial
    run: str
    sweep: SweepConfig
    epochs: list[int]  # rung k at epochs[k]; rungs at or past the trial's last epoch left out
    finish: bool = False  # a promotion at the budget's end: records its vectors, never pauses

    @classmethod
    def of(cls, study: optuna.Study, trial: optuna.Trial, run: str, sweep: SweepConfig, epochs: int) -> Rungs:
        pruner = sweep.pruner
        rungs = rung_epochs(pruner.min_epochs, pruner.reduction_factor, sweep.max_epochs())
        # Pausing a trial at its last epoch would save nothing.
        return cls(study, trial, run, sweep, [e for e in rungs if e < epochs], bool(trial.user_attrs.get(FINISH)))

    def reason_to_stop(self, epoch: int, values: list[float | None]) -> str | None:
        """Why the trial pauses at ``epoch`` with objective ``values``, or None if it goes on."""
        if epoch not in self.epochs:
            return None
        rung = self.epochs.index(epoch)
        where = f"asha: rung {rung} (epoch {epoch})"
        trials = self.study.get_trials(deepcopy=False)
        earlier = records_at(trials, rung).get(self.run)
        if earlier is not None:  # this run was judged here before (a promotion, a retry or a repeat resuming it)
            promoted = any(t.user_attrs.get(PROMOTION) == promotion_key(self.run, rung) for t in trials)
            if earlier.system_attrs.get(STOPPED_AT) == rung and not promoted:
                return f"{where}: stopped as trial {earlier.number} was"
            return None
        storage, trial_id = self.study._storage, self.trial._trial_id
        storage.set_trial_system_attr(trial_id, rung_attr(rung), {"run": self.run, "values": list(values)})
        position_of, kept = ranked(records_at(self.study.get_trials(deepcopy=False), rung), rung, self.sweep)
        position = position_of[self.run]
        if position < kept or self.finish:
            return None
        storage.set_trial_system_attr(trial_id, STOPPED_AT, rung)
        return f"{where}: paused at rank {position + 1} of {len(position_of)}, {kept} promotable"


def latest_values(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, list[float]]:
    """Each run's objective values as last known: a completed trial's final values, else the
    values recorded at the highest rung it reached (whichever trial, paused or promoted, did)."""
    import optuna

    rung_of: dict[str, int] = {}
    known: dict[str, list[float]] = {}
    for trial in trials:
        for key, record in trial.system_attrs.items():
            if key.startswith(RUNG_ATTR_PREFIX) and isinstance(record, dict):
                rung = int(key.removeprefix(RUNG_ATTR_PREFIX))
                if rung >= rung_of.get(record["run"], -1):
                    rung_of[record["run"]], known[record["run"]] = rung, list(record["values"])
    for trial in trials:
        run = trial.user_attrs.get(TrialAttr.RUN)
        if trial.state == optuna.trial.TrialState.COMPLETE and run is not None and trial.values is not None:
            known[run] = list(trial.values)
    return known
