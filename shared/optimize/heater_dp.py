"""The cheapest on/off pattern of one block water heater for given per-block costs (a DP).

Used by the heuristic incumbent (:func:`shared.optimize.incumbent.heuristic_incumbent`): the
heater's own rules are a shortest path over states (blocks off in a row, blocks heated in the
current requirement), so for prices taken from the LP's bus duals the best pattern that keeps
every rule (max-gap windows, daily minimum or its priced shortfall, forced blocks, start cost)
is exact and takes ~1 ms. Placing whole 3 kW blocks by price this way keeps the max-gap chain
and the daily energy consistent, which single-block moves cannot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from shared.optimize.model import Model
    from shared.optimize.water_heater import WaterHeater

_INF = 1e18


def cheapest_heater_blocks(c: WaterHeater, m: Model, block_cost: np.ndarray,
                           shortfall_per_kwh: float) -> np.ndarray:
    """Boolean on-pattern per block of heater component ``c`` minimising
    ``sum(block_cost[on]) + start_cost * starts + shortfall_per_kwh * shortfall_kwh``
    under the rules the component put in the model (``c.gap_windows``, ``c.requirements``,
    forced blocks). A block straddling two requirements counts for the later one only (a
    heuristic: the fixed LP prices the pattern exactly)."""
    assert c.blocks is not None
    nb = len(c.blocks)
    power_kw, dt = c.heater.power_kw, m.dt
    start_cost = c.heater.start_cost
    # longest allowed run of off blocks ending at each block, from the max-gap windows
    max_run = np.full(nb, nb + 1)
    cap = 1
    for ids, need_blocks in c.gap_windows:
        if need_blocks >= 1.0:
            a, b = int(ids[0]), int(ids[-1])
            max_run[b] = min(max_run[b], b - a)
            cap = max(cap, b - a + 1)
    forced = np.array([float(v.lowBound or 0.0) >= 1.0 for v in c.blocks])
    req_of = np.full(nb, -1)
    slots_in = np.zeros(nb, dtype=int)
    ends: dict[int, float] = {}  # last block of a requirement -> its need (kWh)
    for r, (_label, mask, need) in enumerate(c.requirements):
        blocks_in = c.block_of_slot[mask]
        ids, counts = np.unique(blocks_in, return_counts=True)
        req_of[ids], slots_in[ids] = r, counts
        ends[int(ids.max())] = float(need)
    slot_kwh = power_kw * dt
    n_count = max([int(np.ceil(need / slot_kwh - 1e-9)) for need in ends.values()], default=0)
    R, Q = cap + 1, n_count + 1
    qs = np.arange(Q)
    value = np.full((R, Q), _INF)
    value[0, 0] = 0.0  # no block off yet; whether the block before was on only matters at b = 0
    # backpointers per block: source run of the on-arc per q, source q per destination q of the
    # on-arc, source run of the off-arc into the cap, q kept per run at a requirement's end
    back: list[tuple[np.ndarray, np.ndarray, np.ndarray | int, np.ndarray | None]] = []
    start = np.full(R, start_cost)
    for b in range(nb):
        start[0] = 0.0 if (b > 0 or c.state.on_now) else start_cost
        on_val = value + start[:, None] + block_cost[b]
        r_on = np.argmin(on_val, axis=0)
        best_on = on_val[r_on, qs]
        new = np.full((R, Q), _INF)
        q_dest = np.minimum(qs + (slots_in[b] if req_of[b] >= 0 else 0), n_count)
        q_src = np.zeros(Q, dtype=int)
        for q in range(Q):  # q_dest is non-decreasing: only the cap collects several sources
            if best_on[q] < new[0, q_dest[q]]:
                new[0, q_dest[q]] = best_on[q]
                q_src[q_dest[q]] = q
        cap_src: np.ndarray | int = cap - 1
        top = -1 if forced[b] else int(min(max_run[b] - 1, cap))  # highest run an off-arc may leave
        if top >= 0:
            low = min(top, cap - 1)  # runs 0..low move up by one
            new[1:low + 2] = value[:low + 1]
            if top == cap:  # runs cap-1 and cap both land on the cap
                cap_src = np.where(value[cap - 1] <= value[cap], cap - 1, cap)
                new[cap] = np.minimum(value[cap - 1], value[cap])
        keep = None
        if b in ends:
            shortfall = shortfall_per_kwh * np.maximum(0.0, ends[b] - qs * slot_kwh)
            total = new + shortfall[None, :]
            keep = np.argmin(total, axis=1)
            collapsed = np.full((R, Q), _INF)
            collapsed[:, 0] = total[np.arange(R), keep]
            new = collapsed
        back.append((r_on, q_src, cap_src, keep))
        value = new
    r, q = np.unravel_index(int(np.argmin(value)), value.shape)
    on = np.zeros(nb, dtype=bool)
    for b in range(nb - 1, -1, -1):
        r_on, q_src, cap_src, keep = back[b]
        if keep is not None:
            q = int(keep[r])
        if r == 0:  # arrived by an on-arc
            on[b] = True
            q = int(q_src[q])
            r = int(r_on[q])
        elif r == cap:
            r = int(cap_src[q]) if isinstance(cap_src, np.ndarray) else int(cap_src)
        else:
            r -= 1
    return on
