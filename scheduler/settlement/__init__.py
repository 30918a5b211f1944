"""The settlement engine: what runs in each slot, given actual supply, caps and live capacity.

One engine for every way a day is run. A replay walks the day on an instant clock with no
runner (every chunk completes); ``greensched dispatch`` walks it on a real or compressed clock
with the Ray runner of ``clusters/``. Both make the same decisions, so a replayed day predicts
what the operator's night does.

In each slot ``t`` the engine

1. takes the plan's GPUs for ``t`` of jobs still active, never more than the work a job has
   left;
2. fits each site to what it may run: its live capacity and the GPUs that its grid import limit
   and every cap in force allow on the *actual* green supply (the planning problem's own
   capacity rule, :meth:`~scheduler.problem.Problem.capacity_with`);
3. where a site is over, defers work: preemptible jobs before non-preemptible ones (a cap is
   hard: an interrupted non-preemptible job resumes later and says so), and among them the job
   with the most slack first. Deferred work goes to the job's backlog;
4. places backlog where room is left, earliest deadline first, at the allowed site with the
   most room, up to the job's ``max_gpus``, only inside the job's window;
   steps 2-4 also keep each site's ramp limits from the GPUs that ran in the slot before
   (:func:`~scheduler.ramps.ramp_bounds_gpus`): no more than the ramp-up limit allows, and
   where the site would fall faster than its ramp-down limit, work planned there later is
   brought forward (earliest deadline first). A cap is hard and wins over the ramp; an event
   says so;
4b. where the slot's *actual* green supply carries more GPUs than run, brings forward work the
   plan put later on grid power (by the forecast it was made on), dearest grid GPU-slots
   first, so green that comes in above the forecast is used rather than spilled. The engine
   sees each slot's supply as the slot starts, as a site reads its meters (the caps of step 2
   are checked on it too); later slots only by the forecast;
5. hands the chunks to the runner and books what completed; a lost chunk's work returns to the
   backlog, a chunk that failed every attempt fails its job.

A site that loses live capacity triggers ``replan`` (:data:`scheduler.replan.Replan`) for all
remaining work, from the load running then. Work is counted in
GPU-slots (one GPU busy for one slot), as the planning problem counts it.
"""

from scheduler.settlement.engine import (
    MIN_SLOT_TIMEOUT_S,
    Runner,
    Settlement,
    SlotProgress,
    settle,
)

__all__ = [
    "MIN_SLOT_TIMEOUT_S",
    "Runner",
    "Settlement",
    "SlotProgress",
    "settle",
]
