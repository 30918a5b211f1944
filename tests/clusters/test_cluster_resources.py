"""Sites as Ray resources, the numpy decoder, and chunk tasks pinned to their site."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from clusters_testkit import T0

from clusters.resources import gpus_to_units, site_resource
from clusters.tasks import ChunkRecord, ChunkRunner, TaskSettings
from clusters.workload import DecoderConfig, TinyDecoder, real_tokens
from scheduler.contracts.chunks import Chunk


@pytest.mark.parametrize(
    ("gpus", "units"),
    [(1000, 1.0), (1400, 1.0), (1500, 2.0), (2600, 3.0), (250, 0.25), (1, 0.001), (0.01, 1e-4)],
)
def test_gpus_to_units_keeps_fractions_below_one_and_rounds_above(gpus, units):
    assert gpus_to_units(gpus, 1000) == pytest.approx(units)


def test_gpus_to_units_rejects_nothing():
    with pytest.raises(ValueError, match="must be > 0"):
        gpus_to_units(0, 1000)


def test_decoder_is_seeded_and_produces_vocab_tokens():
    model = TinyDecoder(DecoderConfig(context_tokens=16))
    a, b = model.generate(40, seed=3), model.generate(40, seed=3)
    assert len(a) == 40
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.generate(40, seed=4))
    assert a.min() >= 0 and a.max() < 256


def test_decoder_norm_is_numpys_mean_and_std_to_the_bit():
    rng = np.random.default_rng(0)
    scales = rng.uniform(1e-3, 1e3, (500, 1))
    for x in (rng.standard_normal((500, 64)) * scales + scales).astype(np.float32):
        expected = (x - x.mean()) / (x.std() + 1e-5)
        got = TinyDecoder._norm(x)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_real_tokens_scale_with_planned_work():
    tokens = Chunk("j", "qingyang", T0, 2000, 15, 5e6).tokens_accounted
    assert tokens == pytest.approx(2.5e9)
    assert real_tokens(tokens, 1e7) == 250
    assert real_tokens(1.0, 1e7) == 1


def test_tasks_hold_only_their_sites_resource(local_ray):
    runner = ChunkRunner(TaskSettings(gpus_per_unit=1000, tokens_per_real_token=1e8))
    chunks = [
        Chunk("a", site, T0, gpus, 15, 5e6)
        for site, gpus in [("qingyang", 3000), ("shantou", 500), ("qingyang", 250)]
    ]
    records = [ChunkRecord.from_bytes(f) for f in ray.get([runner.submit(c) for c in chunks])]
    for chunk, record in zip(chunks, records, strict=True):
        held = {k: v for k, v in record.assigned_resources.items() if k.startswith("site:")}
        assert held == {site_resource(chunk.site): gpus_to_units(chunk.gpus, 1000)}
        assert record.tokens_real == real_tokens(record.tokens_accounted, 1e8) > 0
        assert record.tokens_accounted == pytest.approx(chunk.gpus * 0.25 * 5e6)


def test_a_site_without_room_leaves_the_task_waiting(local_ray):
    runner = ChunkRunner(TaskSettings(gpus_per_unit=1000))
    ref = runner.submit(Chunk("big", "shantou", T0, 9000, 15, 1.0))  # 9 units > 8
    ready, _ = ray.wait([ref], timeout=1.0)
    assert ready == []
    ray.cancel(ref, force=True)


def test_a_ray_that_fails_to_start_is_tried_again_then_one_message(caplog):
    """Ray's start times out when several start together on a loaded machine (seen here); it
    cannot be made to fail on purpose, so the start is a call that fails as Ray's does."""
    import logging

    from clusters.resources import ClusterError, start_with_retries

    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise Exception("The current node timed out during startup.")  # as Ray raises it

    with caplog.at_level(logging.WARNING, logger="clusters.resources"):
        start_with_retries(flaky, attempts=3, backoff_s=0.01)
    assert len(calls) == 3
    assert caplog.text.count("embedded Ray did not start (The current node timed out") == 2

    def broken() -> None:
        raise RuntimeError("Failed to start the GCS server")

    with pytest.raises(ClusterError) as error:
        start_with_retries(broken, attempts=2, backoff_s=0.01)
    assert str(error.value).startswith(
        "could not start an embedded Ray (2 tries): Failed to start the GCS server;"
    )
    assert "--ray-address HOST:PORT" in str(error.value)
