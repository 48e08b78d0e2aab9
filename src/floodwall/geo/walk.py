"""Binary-tree walks over many addresses at once: one NumPy step per address bit, for every address together.

Both database formats index networks in a binary tree over the address bits (most significant first). Walking all
addresses level by level keeps Python out of the per-address work: each level is a handful of array operations on
the addresses still descending, and the set shrinks as their paths end (most IPv4 paths end by bit 24).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from floodwall.geo.addresses import U64

__all__ = ["Walk", "walk_records", "walk_tree"]

U32 = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class Walk:
    """A libloc-style tree: children per node (0 = none) and a value per node (`empty` = none)."""

    zero: U32
    one: U32
    value: U32
    empty: int


def _bits(hi: U64, lo: U64, depth: int) -> npt.NDArray[np.bool_]:
    word = hi if depth < 64 else lo
    return ((word >> np.uint64(63 - depth % 64)) & np.uint64(1)).astype(np.bool_)


def walk_tree(
    tree: Walk, hi: U64, lo: U64, start_node: int, start_depth: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """The deepest node value on each address's path from `start_node` (at `start_depth` bits), and its depth.

    Returns -1 for both where no node on the path below the start carries a value.
    """
    size = hi.shape[0]
    best = np.full(size, -1, dtype=np.int64)
    best_depth = np.full(size, -1, dtype=np.int16)
    rows = np.arange(size)
    node = np.full(size, start_node, dtype=np.int64)
    for depth in range(start_depth, 129):
        value = tree.value[node]
        has = value != tree.empty
        if has.any():
            best[rows[has]] = value[has]
            best_depth[rows[has]] = depth
        if depth == 128:
            break
        bit = _bits(hi, lo, depth)
        child = np.where(bit, tree.one[node], tree.zero[node])
        going = child != 0
        if not going.all():
            rows, node, hi, lo = rows[going], child[going].astype(np.int64), hi[going], lo[going]
        else:
            node = child.astype(np.int64)
        if rows.size == 0:
            break
    return best, best_depth


def walk_records(
    left: U32, right: U32, node_count: int, hi: U64, lo: U64, start_node: int, start_depth: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """A MaxMind DB search tree: records below `node_count` are nodes, `node_count` is "no data", above is data.

    Returns each address's data record (the raw record value) and the depth where it was found, -1 where none.
    """
    size = hi.shape[0]
    record = np.full(size, -1, dtype=np.int64)
    found_depth = np.full(size, -1, dtype=np.int16)
    rows = np.arange(size)
    node = np.full(size, start_node, dtype=np.int64)
    for depth in range(start_depth, 128):
        bit = _bits(hi, lo, depth)
        child = np.where(bit, right[node], left[node]).astype(np.int64)
        is_data = child > node_count
        if is_data.any():
            record[rows[is_data]] = child[is_data]
            found_depth[rows[is_data]] = depth + 1
        going = child < node_count
        rows, node, hi, lo = rows[going], child[going], hi[going], lo[going]
        if rows.size == 0:
            break
    return record, found_depth
