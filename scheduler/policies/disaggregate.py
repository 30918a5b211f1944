"""Split a group flow back into whole GPUs per job, site and slot.

A group of one job (most groups) has its flow as it is. The groups of several jobs (few, each
of a few jobs) are split in two steps, slot by slot:

1. **Slots**: a group's GPUs in a slot go first to each job's *must-run* amount (work that can
   no longer wait: remaining work minus what ``max_gpus`` can still do in the slots left), then
   to the jobs that need the most slots at ``max_gpus`` (longest remaining first), each up to
   ``max_gpus``. If this greedy split falls short for a group, that group is split by a small
   max-flow instead (OR-Tools ``SimpleMaxFlow``: jobs -> slots with capacity ``max_gpus`` ->
   slot totals), which always succeeds for splittable groups (see :mod:`.flow`).
   This step runs group by group in plain Python; the next, vectorised over the groups.
2. **Sites**: where a group's flow in a slot is at one site, its jobs run there; where it is
   at several, each job first takes GPUs at the site it used in its previous run slot (fewer
   moves), then the group's leftover site flows are dealt to the leftover job GPUs in order.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from ortools.graph.python import max_flow

from scheduler.policies.base import PlanArrays
from scheduler.policies.flow import FlowResult, Groups
from scheduler.problem import Problem

__all__ = ["disaggregate"]

log = logging.getLogger(__name__)


def disaggregate(problem: Problem, groups: Groups, flow: FlowResult) -> PlanArrays:
    """Whole GPUs per job, site and slot that add up to ``flow``'s group-site-slot totals.

    ``groups`` must be splittable (see :mod:`.flow`); a group flow that cannot be split is a bug
    and raises ``RuntimeError``.
    """
    members = np.flatnonzero(groups.job_group >= 0)
    size = np.bincount(groups.job_group[members], minlength=groups.n)
    sole_job = np.full(groups.n, -1, dtype=np.int64)
    sole_job[groups.job_group[members]] = members  # the job of each group of one
    alone = size[flow.group] == 1
    own = PlanArrays(sole_job[flow.group[alone]], flow.site[alone], flow.slot[alone],
                     flow.gpus[alone])  # fmt: skip
    job_group = groups.job_group.copy()
    job_group[members[size[job_group[members]] == 1]] = -1  # the split sees groups of several
    shared, shared_flow = replace(groups, job_group=job_group), flow.rows(~alone)
    totals = np.zeros((groups.n, problem.horizon.n_slots), dtype=np.int64)
    np.add.at(totals, (shared_flow.group, shared_flow.slot), shared_flow.gpus)
    job, slot, gpus = _split_slots(problem, shared, totals)
    return PlanArrays.concat([own, _split_sites(problem, shared, shared_flow, job, slot, gpus)])


def _split_slots(
    problem: Problem, groups: Groups, totals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPUs per job and slot (rows in slot, then job order): the greedy split of each group,
    then max-flow for the groups where it fell short."""
    by_group = np.argsort(groups.job_group, kind="stable")
    starts = np.searchsorted(groups.job_group[by_group], np.arange(groups.n + 1))
    rows: list[tuple[int, int, int]] = []
    redo = []
    for g in np.flatnonzero(starts[1:] > starts[:-1]).tolist():
        split = _greedy_split(problem, by_group[starts[g] : starts[g + 1]], totals[g])
        if split is not None:
            rows += split
        elif totals[g].sum() > 0:
            redo.append(g)
    job, slot, gpus = np.array(rows, dtype=np.int64).reshape(-1, 3).T
    order = np.lexsort((job, slot))
    parts = [(job[order], slot[order], gpus[order])]
    if redo:
        log.info("greedy split fell short for %d group(s); splitting them by max-flow", len(redo))
        parts += [
            _max_flow_split(problem, by_group[starts[g] : starts[g + 1]], totals[g]) for g in redo
        ]
    job, slot, gpus = (np.concatenate(column) for column in zip(*parts, strict=True))
    return job, slot, gpus


def _greedy_split(
    problem: Problem, jobs: np.ndarray, totals: np.ndarray
) -> list[tuple[int, int, int]] | None:
    """Step 1 of the module docstring for one group: ``(job, slot, gpus)`` rows that add up to
    ``totals`` ``[slot]``, or ``None`` where the greedy split falls short. Plain Python: a
    group holds a few jobs, too few for numpy to pay."""
    first, end = problem.release_slot[jobs].tolist(), problem.deadline_slot[jobs].tolist()
    most, left = problem.max_gpus[jobs].tolist(), problem.work_units[jobs].tolist()
    members = range(len(jobs))
    rows = []
    for t in range(min(first), max(end)):
        active = [i for i in members if first[i] <= t < end[i] and left[i] > 0]
        if not active:
            continue
        must = {i: max(left[i] - most[i] * (end[i] - t - 1), 0) for i in active}
        room = {i: min(most[i], left[i]) - must[i] for i in active}
        spare = int(totals[t]) - sum(must.values())
        if spare < 0 or min(room.values()) < 0:
            return None
        give, before = {}, 0
        for i in sorted(active, key=lambda i: (-left[i] / most[i], -left[i], i)):  # longest first
            give[i] = min(max(spare - before, 0), room[i])
            before += room[i]
        if sum(give.values()) < spare:
            return None
        for i in active:
            take = must[i] + give[i]
            left[i] -= take
            if take > 0:
                rows.append((int(jobs[i]), t, take))
    return rows


def _max_flow_split(
    problem: Problem, jobs: np.ndarray, totals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jobs -> slots (cap ``max_gpus``) -> slot totals; the flow on job-slot arcs is the split."""
    n = len(jobs)
    first, end = problem.release_slot[jobs], problem.deadline_slot[jobs]
    lengths = end - first
    pair_job = np.repeat(np.arange(n), lengths)
    pair_slot = (
        first[pair_job]
        + np.arange(lengths.sum())
        - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    source, sink, slot_base = 0, 1, 2 + n
    smf = max_flow.SimpleMaxFlow()
    smf.add_arcs_with_capacity(
        np.zeros(n, dtype=np.int64), 2 + np.arange(n), problem.work_units[jobs]
    )
    pair_arcs = smf.add_arcs_with_capacity(
        2 + pair_job, slot_base + pair_slot, problem.max_gpus[jobs][pair_job]
    )
    used = np.flatnonzero(totals > 0)
    smf.add_arcs_with_capacity(slot_base + used, np.full(len(used), sink), totals[used])
    status = smf.solve(source, sink)
    if status != smf.OPTIMAL or smf.optimal_flow() != totals.sum():
        raise RuntimeError(
            f"a group of {n} jobs cannot carry its flow ({smf.optimal_flow()} of "
            f"{totals.sum()} GPU-slots, status {status}); its cap is not splittable"
        )
    flows = smf.flows(pair_arcs)
    hit = flows > 0
    return jobs[pair_job[hit]], pair_slot[hit], flows[hit].astype(np.int64)


def _split_sites(
    problem: Problem,
    groups: Groups,
    flow: FlowResult,
    job: np.ndarray,
    slot: np.ndarray,
    gpus: np.ndarray,
) -> PlanArrays:
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    n_keys = groups.n * n_sites
    # the group flows per slot and (group, site), the pair flat: group * n_sites + site
    site_flow = np.zeros((n_slots, n_keys), dtype=np.int64)
    np.add.at(site_flow, (flow.slot, flow.group * n_sites + flow.site), flow.gpus)
    # a group at one site in a slot puts its jobs' GPUs there, all at once; the others below
    used = site_flow.reshape(n_slots, groups.n, n_sites) > 0
    one_site, only_site = used.sum(axis=2) == 1, used.argmax(axis=2)  # [slot, group]
    by_slot = np.argsort(slot, kind="stable")
    job, slot, gpus = job[by_slot], slot[by_slot], gpus[by_slot]
    direct = one_site[slot, groups.job_group[job]]
    at_one = PlanArrays(job[direct], only_site[slot[direct], groups.job_group[job[direct]]],
                        slot[direct], gpus[direct])  # fmt: skip
    job, slot, gpus = job[~direct], slot[~direct], gpus[~direct]
    bounds = np.searchsorted(slot, np.arange(n_slots + 1))
    known = np.searchsorted(at_one.slot, np.arange(n_slots + 1))  # at_one is in slot order
    last_site = np.full(problem.n_jobs, -1, dtype=np.int64)  # main site in the run slot before
    parts: list[PlanArrays] = [at_one]
    seen = 0  # at_one rows already in last_site
    for t in np.unique(slot).tolist():
        j, x = job[bounds[t] : bounds[t + 1]], gpus[bounds[t] : bounds[t + 1]]
        last_site[at_one.job[seen : known[t]]] = at_one.site[seen : known[t]]  # in slot order
        seen = known[t]
        g = groups.job_group[j]
        site_left = np.where(np.repeat(one_site[t], n_sites), 0, site_flow[t])  # per (g, site)
        # 1. stay: take what the site used last slot still has
        stay = last_site[j]
        take = np.zeros(len(j), dtype=np.int64)
        has = np.flatnonzero(stay >= 0)
        if len(has):
            key = g[has] * n_sites + stay[has]
            order = np.lexsort((j[has], key))
            key_sorted, x_sorted = key[order], x[has][order]
            before = np.cumsum(x_sorted) - x_sorted  # within the key: x >= 0, so nondecreasing
            start = np.ones(len(order), dtype=bool)
            start[1:] = key_sorted[1:] != key_sorted[:-1]
            before -= np.maximum.accumulate(np.where(start, before, 0))
            took = np.minimum(np.maximum(site_left[key_sorted] - before, 0), x_sorted)
            take[has[order]] = took
            site_left -= np.bincount(key_sorted, weights=took, minlength=n_keys).astype(np.int64)
        stayed = np.flatnonzero(take)
        if len(stayed):
            parts.append(PlanArrays(j[stayed], stay[stayed], np.full(len(stayed), t), take[stayed]))
        # 2. deal the group's leftover site GPUs to the leftover job GPUs, both in order
        rest = x - take
        order = np.lexsort((j, g))
        job_end = np.cumsum(rest[order])
        site_end = np.cumsum(site_left)
        cuts = np.union1d(job_end, site_end)  # sorted and distinct: every piece has length > 0
        cuts = cuts[cuts > 0]
        length = np.diff(cuts, prepend=0)
        piece_start = cuts - length
        who = order[np.searchsorted(job_end, piece_start, side="right")]
        where = np.searchsorted(site_end, piece_start, side="right") % n_sites
        parts.append(PlanArrays(j[who], where, np.full(len(who), t), length))
        # remember each job's main site this slot
        slot_job = np.concatenate([j[stayed], j[who]])
        slot_site = np.concatenate([stay[stayed], where])
        slot_gpus = np.concatenate([take[stayed], length])
        main = np.lexsort((slot_gpus, slot_job))
        last_site[slot_job[main]] = slot_site[main]  # the largest piece is written last
    return PlanArrays.concat(parts)
