"""One embedded Ray per test session, and a multi-node cluster (one node per site) for the
tests that need nodes to come and go.

The multi-node tests run last: a process can only be connected to one Ray, so the multi-node
fixture shuts the embedded one down first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rgs", dir="/tmp"))

import ray
from clusters_testkit import GPUS_PER_UNIT, SITES_GPUS

from clusters.resources import site_resource, start_local

START_ATTEMPTS = 2  # tries to start the multi-node cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move tests that use the multi-node cluster to the end of the session, and keep every
    cluster test on one worker under ``pytest -n`` (``--dist loadgroup``): they share one Ray."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.xdist_group("ray-clusters"))
    items.sort(key=lambda item: "site_cluster" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def local_ray() -> dict[str, float]:
    """An embedded Ray with ``site:qingyang`` (16 units) and ``site:shantou`` (8 units)."""
    if not ray.is_initialized():
        start_local(SITES_GPUS, GPUS_PER_UNIT, num_cpus=2, log_to_driver=False)
    yield {s: ray.cluster_resources()[site_resource(s)] for s in SITES_GPUS}
    ray.shutdown()


@pytest.fixture(scope="module")
def site_cluster():
    """A head node without site resources plus one node per site; shut down afterwards."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    for attempt in range(1, START_ATTEMPTS + 1):
        cluster = None
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 1, "include_dashboard": False},
            )
            nodes = {
                site: cluster.add_node(
                    num_cpus=1, resources={site_resource(site): gpus / GPUS_PER_UNIT}
                )
                for site, gpus in SITES_GPUS.items()
            }
            cluster.wait_for_nodes()
            break
        except Exception as error:
            if cluster is not None:
                cluster.shutdown()
            # Ray waits a fixed time for a new node to register, or for its GCS server to write
            # its port file; on a loaded 2-core machine either is sometimes missed ("timed out
            # during startup", "Timed out waiting for file"): start the cluster once more
            if attempt == START_ATTEMPTS or "timed out" not in str(error).lower():
                raise
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()
