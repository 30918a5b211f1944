"""Split a group flow back into whole GPUs per job, site and slot.

A group of one job (most groups) has its flow as it is. The groups of several jobs (few, each
of a few jobs) are split in two steps, slot by slot:

1. **Slots**: a group's GPUs in a slot go first to each job's *must-run* amount (work that can
   no longer wait: remaining work minus what ``max_gpus`` can still do in the slots left), then
   to the jobs that need the most slots at ``max_gpus`` (longest remaining first), each up to
   ``max_gpus``. If this greedy split falls short for a group, that group is split by a small
   max-flow instead (OR-Tools ``SimpleMaxFlow``: jobs -> slots with capacity ``max_gpus`` ->
   slot totals), which always succeeds for splittable groups (see :mod:`.flow`).
2. **Sites**: where a group's flow in a slot is at one site, its jobs run there (at once, for
   all such slots); where it is at several, each job first takes GPUs at the site it used in
   its previous run slot (fewer moves), then the group's leftover site flows are dealt to the
   leftover job GPUs in order.

Both steps walk their few jobs per group and slot in plain Python, where numpy's cost per call
would dominate.
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
    rows: list[tuple[int, int, int, int]] = []  # (job, site, slot, gpus)
    seen = 0  # at_one rows already in last_site
    for t in np.unique(slot).tolist():
        last_site[at_one.job[seen : known[t]]] = at_one.site[seen : known[t]]  # in slot order
        seen = known[t]
        in_slot = job[bounds[t] : bounds[t + 1]]
        pieces = _split_slot_sites(
            in_slot.tolist(), gpus[bounds[t] : bounds[t + 1]].tolist(),
            groups.job_group[in_slot].tolist(), last_site[in_slot].tolist(), site_flow[t],
            n_sites,
        )  # fmt: skip
        main: dict[int, tuple[int, int]] = {}  # job -> (GPUs, site) of its largest piece
        for j, s, x in pieces:
            rows.append((j, s, t, x))
            if x >= main.get(j, (0, -1))[0]:  # the later of equal pieces
                main[j] = (x, s)
        for j, (_, s) in main.items():
            last_site[j] = s
    split = PlanArrays(*np.array(rows, dtype=np.int64).reshape(-1, 4).T)
    return PlanArrays.concat([at_one, split])


def _split_slot_sites(
    job: list[int],
    gpus: list[int],
    group: list[int],
    last_site: list[int],
    site_flow: np.ndarray,
    n_sites: int,
) -> list[tuple[int, int, int]]:
    """One slot of step 2 for the groups at several sites: ``(job, site, gpus)`` pieces. Each
    job first stays at ``last_site`` (``-1``: none) while that site's flow lasts, jobs in id
    order; then each group's leftover site flows ``site_flow`` ``[group * n_sites + site]``
    are dealt to its leftover job GPUs, both in order. Plain Python: a slot has a few rows."""
    left = {
        (g, s): int(site_flow[g * n_sites + s]) for g in sorted(set(group)) for s in range(n_sites)
    }
    rest = list(gpus)
    staying = sorted(
        (k for k in range(len(job)) if last_site[k] >= 0),
        key=lambda k: (group[k], last_site[k], job[k]),
    )
    took = [0] * len(job)
    for k in staying:
        key = (group[k], last_site[k])
        took[k] = min(left[key], rest[k])
        left[key] -= took[k]
        rest[k] -= took[k]
    pieces = [(job[k], last_site[k], took[k]) for k in range(len(job)) if took[k] > 0]
    jobs = sorted(range(len(job)), key=lambda k: (group[k], job[k]))
    keys = list(left)  # in (group, site) order
    a = b = 0
    while a < len(jobs) and b < len(keys):
        k, key = jobs[a], keys[b]
        if rest[k] == 0:
            a += 1
        elif left[key] == 0:
            b += 1
        else:
            length = min(rest[k], left[key])
            pieces.append((job[k], key[1], length))
            rest[k] -= length
            left[key] -= length
    return pieces
