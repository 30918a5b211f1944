"""The inference workload: a compact transformer-style decoder in numpy that really computes.

Nothing is downloaded: weights are drawn from a seeded generator. The model is a byte-level
decoder (vocabulary 256) with ``n_layers`` blocks of single-head causal attention (with a
key/value cache) and a ReLU MLP, pre-norm residuals, tied input/output embeddings.

Planned work is far larger than one machine can compute, so a run accounts tokens at the plan's
scale and generates a documented fraction of them for real::

    tokens_accounted = gpus * slot_minutes / 60 * tokens_per_gpu_hour
    tokens_real      = ceil(tokens_accounted / tokens_per_real_token)

With the default scale a full default site-slot (24,000 GPUs x 15 min x 5e6 tokens per GPU-hour,
3e10 tokens) generates 3,000 real tokens, about 0.3 s on two cores (~5,000 tokens/s per
core), so a default night of ~2e12 planned tokens computes for about 20 seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "DEFAULT_TOKENS_PER_REAL_TOKEN",
    "DecoderConfig",
    "TinyDecoder",
    "real_tokens",
    "tiny_decoder",
]

DEFAULT_TOKENS_PER_REAL_TOKEN = 1.0e7  # planned (accounted) tokens per token really generated


@dataclass(frozen=True)
class DecoderConfig:
    """Shape of the decoder; ``context_tokens`` bounds the KV cache (it restarts when full)."""

    vocab: int = 256
    d_model: int = 64
    d_mlp: int = 256
    n_layers: int = 2
    context_tokens: int = 256
    weight_seed: int = 0


class TinyDecoder:
    """A seeded decoder-only transformer; :meth:`generate` samples tokens autoregressively."""

    def __init__(self, config: DecoderConfig = DecoderConfig()) -> None:
        self.config = config
        rng = np.random.default_rng(config.weight_seed)
        d, f = config.d_model, config.d_mlp

        def init(*shape: int) -> np.ndarray:
            return (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)

        self.embedding = init(config.vocab, d) * math.sqrt(config.vocab / d)
        self.position = init(config.context_tokens, d) * 0.1
        self.layers = [
            {"qkv": init(d, 3 * d), "out": init(d, d), "up": init(d, f), "down": init(f, d)}
            for _ in range(config.n_layers)
        ]

    @staticmethod
    def _norm(x: np.ndarray) -> np.ndarray:
        """``(x - x.mean()) / (x.std() + 1e-5)`` of a float32 vector, to the bit.

        Spelled out as numpy computes it (float32 sums, each divided in float64 and rounded to
        float32), in a third of the time: ``mean`` and ``std`` go through numpy's generic
        reductions, which cost more than the rest of a layer at this size.
        """
        n = x.shape[0]
        deviation = x - np.float32(float(np.add.reduce(x)) / n)
        variance = np.float32(float(np.add.reduce(deviation * deviation)) / n)
        return deviation / (np.sqrt(variance) + np.float32(1e-5))

    def _step(self, token: int, pos: int, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Logits for the next token after ``token`` at position ``pos``; fills the KV cache."""
        d = self.config.d_model
        x = self.embedding[token] + self.position[pos]
        for i, layer in enumerate(self.layers):
            qkv = self._norm(x) @ layer["qkv"]
            q, keys[i, pos], values[i, pos] = qkv[:d], qkv[d : 2 * d], qkv[2 * d :]
            scores = keys[i, : pos + 1] @ q / math.sqrt(d)  # causal: only positions <= pos
            weights = np.exp(scores - scores.max())
            x = x + (weights / weights.sum()) @ values[i, : pos + 1] @ layer["out"]
            x = x + np.maximum(self._norm(x) @ layer["up"], 0.0) @ layer["down"]
        return self._norm(x) @ self.embedding.T

    def generate(self, n_tokens: int, seed: int) -> np.ndarray:
        """Sample ``n_tokens`` tokens (int array) from a seeded start token, temperature 1."""
        if n_tokens < 0:
            raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
        cfg = self.config
        rng = np.random.default_rng(seed)
        # positions cycle through the context; a short run needs only its own rows
        rows = min(n_tokens, cfg.context_tokens)
        keys = np.zeros((cfg.n_layers, rows, cfg.d_model), dtype=np.float32)
        values = np.zeros_like(keys)
        out = np.empty(n_tokens, dtype=np.int64)
        token = int(rng.integers(cfg.vocab))
        draws = rng.random(n_tokens)
        for i in range(n_tokens):
            logits = self._step(token, i % cfg.context_tokens, keys, values)
            cdf = np.cumsum(np.exp(logits - logits.max()))
            token = min(int(np.searchsorted(cdf, draws[i] * cdf[-1])), cfg.vocab - 1)
            out[i] = token
        return out


@lru_cache(maxsize=4)
def tiny_decoder(config: DecoderConfig = DecoderConfig()) -> TinyDecoder:
    """The decoder for ``config``, built once per process (weights are read-only)."""
    return TinyDecoder(config)


def real_tokens(tokens_accounted: float, tokens_per_real_token: float) -> int:
    """Tokens really generated for ``tokens_accounted``: ``ceil(accounted / scale)``, >= 0."""
    if tokens_per_real_token <= 0:
        raise ValueError(f"tokens_per_real_token must be > 0, got {tokens_per_real_token}")
    return max(0, math.ceil(tokens_accounted / tokens_per_real_token))
