"""A multi-node local Ray (head without site resources, one node per site): placement by
node, connecting to a cluster that lacks a site, and a site whose node dies mid-run."""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest
import ray
from clusters_testkit import (
    FAST,
    GPUS_PER_UNIT,
    SITES_GPUS,
    SLOT,
    T0,
    day_problem,
    job_row,
    run_on_ray,
    slow_at_shantou,
)

from clusters.resources import ClusterError, connect
from clusters.tasks import ChunkRecord, ChunkRunner
from scheduler.contracts.chunks import Chunk


def test_tasks_run_on_the_node_that_carries_their_site(site_cluster):
    _, nodes = site_cluster
    runner = ChunkRunner(FAST)
    chunks = [Chunk("j", site, T0, 1000, 15, 5e6) for site in SITES_GPUS for _ in range(3)]
    records = [ChunkRecord.from_bytes(f) for f in ray.get([runner.submit(c) for c in chunks])]
    for chunk, record in zip(chunks, records, strict=True):
        assert record.node_id == nodes[chunk.site].node_id
        assert record.assigned_resources[f"site:{chunk.site}"] == 1.0


def test_connect_checks_every_site_has_capacity(site_cluster):
    cluster, _ = site_cluster
    assert connect(cluster.address, SITES_GPUS, GPUS_PER_UNIT) == {"qingyang": 16, "shantou": 8}
    with pytest.raises(ClusterError) as missing:
        connect(cluster.address, {**SITES_GPUS, "ordos": 4000}, GPUS_PER_UNIT)
    message = str(missing.value)
    assert "site 'ordos'" in message and "'site:ordos'" in message
    assert "the cluster has 0" in message
    assert """ray start --resources='{"site:ordos": 4}'""" in message
    with pytest.raises(ClusterError, match=r"needs 32 units .* the cluster has 16"):
        connect(cluster.address, {"qingyang": 32000}, GPUS_PER_UNIT)


def replan_to_live_sites(jobs: list[dict]):
    """A simple re-planner: each job's remaining work at max GPUs on its first live site."""
    by_id = pd.DataFrame(jobs).set_index("job_id")

    def replan(state):
        rows, from_time, available = [], state.from_time, state.live_gpus
        for job_id, gpu_hours in state.remaining_gpu_hours.items():
            job = by_id.loc[job_id]
            allowed = [s for s in (job["sites"].split(";") if job["sites"] else available)]
            live = [s for s in allowed if s in available]
            if not live:
                continue
            gpus = min(job["max_gpus"], available[live[0]])
            for i in range(math.ceil(gpu_hours / (gpus * 0.25))):
                rows.append(
                    {"job_id": job_id, "site": live[0], "time": from_time + i * SLOT, "gpus": gpus}
                )
        return pd.DataFrame(rows, columns=["job_id", "site", "time", "gpus"])

    return replan


@pytest.mark.slow
def test_a_site_lost_mid_run_is_replanned_where_allowed(site_cluster):
    """Shantou's node dies after the first slot: 'anywhere' moves to qingyang and finishes,
    'coastal' may only run at shantou and ends late with the reason."""
    cluster, nodes = site_cluster
    jobs = [job_row("anywhere", 1000, 1000), job_row("coastal", 1000, 1000, "shantou")]
    plan = pd.DataFrame(
        [
            {"job_id": job_id, "site": "shantou", "time": T0 + i * SLOT, "gpus": 1000}
            for i in range(4)
            for job_id in ("anywhere", "coastal")
        ]
    )

    def kill_shantou_after_first_slot(progress):
        if progress.index == 0:
            cluster.remove_node(nodes["shantou"])

    report = run_on_ray(
        day_problem(jobs, {"qingyang": 0.0, "shantou": 0.0}),
        plan,
        replan=replan_to_live_sites(jobs),
        slot_timeout_s=10,
        progress=kill_shantou_after_first_slot,
    )

    assert report.statuses == {"anywhere": "done", "coastal": "late"}
    out = report.jobs.set_index("job_id")
    assert out.loc["anywhere", "sites"] == "qingyang;shantou"
    assert out.loc["anywhere", "gpu_hours_done"] == pytest.approx(1000)
    assert out.loc["coastal", "gpu_hours_done"] == pytest.approx(250)
    reason = out.loc["coastal", "reason"]
    assert "unfinished: 250 of 1000 GPU-h" in reason
    assert "shantou lost capacity" in reason and "re-plan placed 0 of 750 GPU-h" in reason
    kinds = set(report.events["kind"])
    assert {"site_lost", "replanned"} <= kinds
    ran = report.chunks[report.chunks["outcome"] == "ok"]
    assert (ran.loc[ran["time"] > T0, "site"] == "qingyang").all()


@pytest.mark.slow
def test_a_node_dying_under_running_tasks_without_a_replanner_ends_jobs_late(site_cluster):
    """Shantou's node dies while its slot-1 tasks run; with no re-planner the lost chunk's work
    is carried (and 'anywhere' resumes it at qingyang) but the rest planned at shantou is
    dropped with a reason: both jobs end late, nothing silently."""
    cluster, nodes = site_cluster
    if ray.cluster_resources().get("site:shantou", 0) == 0:  # an earlier test removed it
        nodes["shantou"] = cluster.add_node(num_cpus=1, resources={"site:shantou": 8})
        cluster.wait_for_nodes()
    jobs = [job_row("anywhere", 1000, 1000), job_row("coastal", 1000, 1000, "shantou")]
    plan = pd.DataFrame(
        [
            {"job_id": job_id, "site": "shantou", "time": T0 + i * SLOT, "gpus": 1000}
            for i in range(4)
            for job_id in ("anywhere", "coastal")
        ]
    )

    def kill_shantou_during_second_slot(progress):
        if progress.index == 0:
            threading.Timer(1.5, cluster.remove_node, args=(nodes["shantou"],)).start()

    report = run_on_ray(
        day_problem(jobs, {"qingyang": 0.0, "shantou": 0.0}),
        plan,
        work=slow_at_shantou,
        slot_timeout_s=20,
        progress=kill_shantou_during_second_slot,
    )

    assert report.statuses == {"anywhere": "late", "coastal": "late"}
    lost = report.chunks[report.chunks["outcome"] == "lost"]
    assert set(lost["job_id"]) == {"anywhere", "coastal"} and (lost["time"] == T0 + SLOT).all()
    out = report.jobs.set_index("job_id")
    assert out.loc["anywhere", "gpu_hours_done"] == pytest.approx(500)  # slot 0 + carried
    assert out.loc["coastal", "gpu_hours_done"] == pytest.approx(250)
    for job_id in ("anywhere", "coastal"):
        assert "no re-plan placed the 500 GPU-h planned there" in out.loc[job_id, "reason"]
