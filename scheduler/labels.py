"""String label columns (job ids, site names) to integer positions and back, through Arrow.

Plans and site tables carry job ids and site names as pandas' Arrow-backed strings; every
policy, the validator, the settlement engine and the metrics turn them into positions and back
on their hot paths. Arrow's hash lookup and ``take`` do that several times faster than a pandas
index or an object array of Python strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["label_index", "labels_at"]


def label_index(values: pd.Series | np.ndarray, labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``labels`` (job ids, site names), ``-1`` where it is
    absent or missing [int64]."""
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: the general, slower lookup
        return pd.Index(list(labels), dtype=object).get_indexer(values).astype(np.int64)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        if len(array) and array.null_count < len(array):
            return np.full(len(array), -1, dtype=np.int64)  # numbers name no label
        array = array.cast(pa.string())
    found = pc.index_in(array, value_set=pa.array(list(labels), type=array.type))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def labels_at(labels: Sequence[str] | np.ndarray, positions: np.ndarray) -> pd.Series:
    """``labels[positions]`` as a column of pandas' default string dtype."""
    taken = pa.array(list(labels), type=pa.large_string()).take(pa.array(positions))
    return taken.to_pandas()
