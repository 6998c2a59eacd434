"""A latency table as tensors over the space's choices: batched, expected (differentiable), extremes.

The entries are the table's corrected ones (:meth:`LatencyTable.entry_ms`), so the model predicts
what :meth:`LatencyTable.predict` does. For the mobile space a block's latency depends on its
candidate and on the widths of its input's and its own stage. Per slot the model holds
``T[c, a, b]`` (candidate, input width, output width; ``skip`` is 0) for a stage's first block (its
input width is the previous stage's, or the stem's: one column) and ``T[c, b]`` for the other
blocks (input and output share the stage's width). Then

* ``model(choices)``: the predicted latency (ms) of architectures given as candidate indices per
  group (``(..., rows)`` int64, the layout of ``space.arch_shapes``), for predictors and searches;
* ``model.expected(weights)``: ``E[LAT]`` under independent rows with probabilities (or mixing
  weights) ``weights[g]`` ``(rows, K)``: ``stem + overhead + sum_slots sum_{c,a,b} p_c q_a q_b T[c,a,b]
  + sum_b q_b head_b``; linear in each row, so gradients flow to every architecture parameter
  (FBNet's and ProxylessNAS' expected-latency term);
* ``model.extremes()``: the smallest and largest latency over the space and their architectures
  (exact, by dynamic programming over the stages' widths).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..spaces.mobile import layout
from ..spaces.mobile_arch import SKIP, MobileArch, StageArch
from .lut import LatencyTable
from .parts import block_key, slot_names


class LatencyModel:
    """The tensors of a complete :class:`~toponas.hardware.lut.LatencyTable` for ``space``."""

    def __init__(self, table: LatencyTable, space) -> None:
        table.check_complete(space)
        self.table, self.space = table, space
        stem, stages, slots, _ = layout(space.spec, table.channels)
        e = table.entry_ms  # the entries as their networks run them (the table's fit)
        self.base = float(e("stem")) + table.overhead_ms
        self.head = torch.tensor([e(f"head:{w}") for w in stages[-1].widths], dtype=torch.float64)
        self.slots = []  # (slot, tensor)
        for slot, name in zip(slots, slot_names(space)):
            cands = space.group_ops[slot.group]
            outs = stages[slot.stage].widths
            if slot.residual:
                t = torch.tensor([[0.0 if c == SKIP else e(block_key(name, c, w, w)) for w in outs] for c in cands],
                                 dtype=torch.float64)
            else:
                ins = (stem,) if slot.in_stage is None else stages[slot.in_stage].widths
                t = torch.tensor([[[e(block_key(name, c, a, b)) for b in outs] for a in ins] for c in cands],
                                 dtype=torch.float64)
            self.slots.append((slot, t))

    def __call__(self, choices: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ms of architectures given as candidate indices per group (``(..., rows)``)."""
        widths = choices["width"]
        total = self.base + self.head[widths[..., -1]]
        for slot, t in self.slots:
            c = choices[slot.group][..., slot.index]
            w = widths[..., slot.stage]
            if slot.residual:
                total = total + t[c, w]
            else:
                a = torch.zeros_like(c) if slot.in_stage is None else widths[..., slot.in_stage]
                total = total + t[c, a, w]
        return total

    def arch(self, arch) -> float:
        return float(self(self.space.choices(arch)))

    def expected(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``E[LAT]`` in ms under per-row probabilities ``weights[g]`` ``(rows, K)``; differentiable."""
        q = weights["width"]
        like = q
        total = like.new_tensor(self.base) + (q[-1] * self.head.to(like)).sum()
        for slot, t in self.slots:
            p = weights[slot.group][slot.index]
            t = t.to(like)
            if slot.residual:
                total = total + torch.einsum("c,b,cb->", p, q[slot.stage], t)
            else:
                qa = like.new_ones(1) if slot.in_stage is None else q[slot.in_stage]
                total = total + torch.einsum("c,a,b,cab->", p, qa, q[slot.stage], t)
        return total

    def extremes(self) -> tuple[tuple[float, MobileArch], tuple[float, MobileArch]]:
        """``((smallest ms, its arch), (largest ms, its arch))`` over every architecture of the space."""
        return self._extreme(min), self._extreme(max)

    def _extreme(self, pick) -> tuple[float, MobileArch]:
        spec, space = self.space.spec, self.space
        n_stages = len(spec.stages)
        by_stage = [[(slot, t) for slot, t in self.slots if slot.stage == s] for s in range(n_stages)]
        # best[w] = (cost, stage choices so far) with the last stage at width index w
        best: dict[int | None, tuple[float, list]] = {None: (0.0, [])}
        for s in range(n_stages):
            nxt: dict[int | None, tuple[float, list]] = {}
            for w in range(len(spec.widths)):
                options = []
                for w_prev, (cost, chosen) in best.items():
                    c_total, blocks = cost, []
                    for slot, t in by_stage[s]:
                        cands = space.group_ops[slot.group]
                        if slot.residual:
                            col = t[:, w].tolist()
                        else:
                            col = t[:, 0 if w_prev is None else w_prev, w].tolist()
                        i = col.index(pick(col))
                        c_total += col[i]
                        blocks.append(cands[i])
                    options.append((c_total, chosen + [(w, tuple(blocks))]))
                nxt[w] = pick(options, key=lambda o: o[0])
            best = nxt
        options = [(cost + float(self.head[w]), chosen) for w, (cost, chosen) in best.items()]
        cost, chosen = pick(options, key=lambda o: o[0])
        arch = MobileArch(tuple(StageArch(st.name, spec.widths[w], blocks)
                                for st, (w, blocks) in zip(spec.stages, chosen)))
        return cost + self.base, arch


__all__ = ["LatencyModel"]
