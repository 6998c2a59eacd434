"""Numerical checks of a simplification against what it must equal.

* ``exact``: outputs and all gradients (every parameter, and the architecture parameters ``alpha``
  through ``w = softmax(alpha)``) equal the plain supernet's, train and eval mode, random everything.
* ``full``: at one-hot weights (every candidate on all edges, and random one-hots per edge; in the
  DARTS space genotypes, ``none`` on the edges they do not use) the output equals the discrete
  network built from the same weights with search BN (the space's ``verify_vertices``,
  ``load_vertex_weights`` and ``one_hot``: ``toponas.spaces.protocol``); between vertices, outputs and gradients equal
  an independent, literal implementation of the rules
  (``sum_{i not in G} w_i op_i(x) + W_G * bn(conv(relu(x), sum_{i in G} w_i Khat_i))`` per edge, and
  for rule 4 ``W_end * h + W_next * stage(relu(h))`` with ``h = bn(P_w (D_w * relu(x)))``, every
  depthwise kernel as a dense kernel of the largest extent); for inverted-residual (MBConv) candidates
  ``W_G * bn(P_w * relu(bn(D_w * relu(bn(E_w * x)))))`` with each kernel ``sum_i w_i Khat_i`` written
  into a zero kernel of the largest expansion and kernel size (rule ``block_merge``).
* both: a sampled step (``active`` candidates) equals the plain supernet's sampled step.

Checks run in float64 by default, so an exact rewrite agrees to ~1e-12 and any wrong term shows.
Tolerances (relative to the largest magnitude of the reference quantity):

* exact comparisons: ``1e-9`` in float64 (``1e-4`` in float32);
* full mode at a vertex: ``1e-2``. The only difference there is BN's ``eps`` acting on a kernel
  rescaled to unit norm (``var + eps`` with a different ``var``), about 1e-4..1e-3 of the output
  scale; a wrong rewrite (a missing term, a wrong kernel or weight) differs by order 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces.mixed import MixedEdge, Mixing
from ..spaces.primitives import BN, SEARCH_BN, AvgPool, Conv, Identity, MaxPool, ReLU
from . import rules as _rules
from .rules import EXACT_RULES, RULES, resolve_rules
from .simplify import simplify

VERTEX_RTOL = 1e-2


@dataclass(frozen=True)
class Check:
    """One comparison: the largest absolute difference, the tolerance it must stay under, pass/fail."""

    name: str
    diff: float
    tol: float
    where: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.diff <= self.tol)  # NaN fails


@dataclass
class VerifyReport:
    """Every check of one ``verify`` call; ``ok`` only if all pass (and there was at least one)."""

    space: str
    mode: str
    rules: frozenset[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def __str__(self) -> str:
        rules = ", ".join(r for r in RULES if r in self.rules) or "none"
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [
            f"verify {self.space}, mode {self.mode} (rules: {rules}): "
            f"{'OK' if self.ok else 'FAILED'}, {len(self.checks) - len(self.failures)}/{len(self.checks)} passed",
            f"  {'check':<{width}}  {'max |diff|':>10}  {'tolerance':>10}  result",
        ]
        for c in self.checks:
            where = f"  ({c.where})" if c.where and not c.ok else ""
            lines.append(
                f"  {c.name:<{width}}  {c.diff:10.3g}  {c.tol:10.3g}  {'ok' if c.ok else 'FAIL'}{where}"
            )
        return "\n".join(lines)


def verify(space, mode: str, *, rules=None, disable=(), channels: int = 8, cells: int | None = None,
           batch: int = 4, size: int = 16, seed: int = 0, trials: int = 3,
           dtype: torch.dtype = torch.float64) -> VerifyReport:
    """Check ``simplify(supernet, mode)`` numerically on random inputs, weights and architectures.

    ``space`` follows the space protocol (``toponas.spaces.protocol.SearchSpace``): its vertices, one-hot
    weights and weight copy come from it. ``cells``: default the space's ``verify_cells`` (DARTS: a normal
    cell and two reduction cells, so every group and both preprocessings are exercised).
    """
    chosen = resolve_rules(mode, rules, disable)
    shapes = dict(space.arch_shapes)
    if cells is None:
        cells = space.verify_cells
    report = VerifyReport(getattr(space, "name", type(space).__name__), mode, chosen)
    if mode == "off":
        return report  # nothing is rewritten; an empty report is not ok on purpose
    exact_tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.manual_seed(seed)
    plain = space.build_supernet(channels, cells, num_classes=10).to(dtype)
    _randomize(plain)
    simple = simplify(copy.deepcopy(plain), mode, rules=rules, disable=disable)
    gen = torch.Generator().manual_seed(seed)

    def rand(*s: int) -> torch.Tensor:
        return torch.randn(*s, generator=gen, dtype=dtype)

    def rand_alpha() -> dict[str, torch.Tensor]:
        return {g: rand(*shape).requires_grad_() for g, shape in shapes.items()}

    # 1. soft weights: plain (exact) or the rules' literal formula (full), outputs and every gradient
    reference = plain if not (chosen - EXACT_RULES) else _literal_reference(plain, chosen)
    what = "plain" if reference is plain else "rule formula"
    # a classifier's logits (batch, 10), or what the space says its output is (an image for restoration spaces)
    out_shape = space.output_shape(batch, size) if hasattr(space, "output_shape") else (batch, 10)
    for t in range(trials):
        alpha = rand_alpha()
        x = rand(batch, 3, size, size)
        probe = rand(*out_shape)
        for train in (True, False):
            tag = f"random alpha #{t} {'train' if train else 'eval'}"
            for c in _compare(reference, simple, x, probe, alpha, None, train, exact_tol):
                report.checks.append(Check(f"{tag} vs {what}: {c.name}", c.diff, c.tol, c.where))

    # 2. sampled step (hard one-hot, straight-through like GDAS): the base computation, exactly
    for t in range(trials):
        alpha = rand_alpha()
        index = {}
        for g, a in alpha.items():
            probs = F.softmax(a.detach(), dim=-1).float()
            index[g] = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        x, probe = rand(batch, 3, size, size), rand(*out_shape)
        for c in _compare(plain, simple, x, probe, alpha, index, True, exact_tol):
            report.checks.append(Check(f"sampled #{t} vs plain: {c.name}", c.diff, c.tol, c.where))

    # 3. full mode: every vertex kind equals the discrete network with search BN
    if chosen - EXACT_RULES:
        for name, vertex in space.verify_vertices(trials, gen):
            x = rand(batch, 3, size, size)
            for train in (True, False):
                diff, scale = _vertex_diff(space, simple, vertex, channels, cells, x, train, dtype)
                tag = f"vertex {name} {'train' if train else 'eval'} vs discrete net: output"
                report.checks.append(Check(tag, diff, VERTEX_RTOL * scale))
    return report


# -- helpers ----------------------------------------------------------------------------------------


def _randomize(model: nn.Module) -> None:
    """Non-trivial affine BN parameters, so every gradient is generic (conv weights stay as drawn)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


@dataclass(frozen=True)
class _Diff:
    name: str
    diff: float
    tol: float
    where: str = ""


def _run(model: nn.Module, x: torch.Tensor, probe: torch.Tensor, alpha: dict[str, torch.Tensor],
         sampled: dict[str, torch.Tensor] | None, train: bool):
    """Output and gradients (named parameters, and alpha of every group, concatenated) of ``<model(x), probe>``."""
    model.train(train)
    soft = {g: F.softmax(a, dim=-1) for g, a in alpha.items()}
    if sampled is None:
        mixing = Mixing(soft)
    else:  # hard one-hot with straight-through gradient (GDAS); only the sampled candidates run
        hard = {g: F.one_hot(sampled[g], s.shape[-1]).to(s.dtype) - s.detach() + s for g, s in soft.items()}
        mixing = Mixing(hard, {g: [[int(i)] for i in sampled[g]] for g in soft})
    out = model(x, mixing)  # (B, classes)
    names, params = zip(*[(n, p) for n, p in model.named_parameters()])
    alphas = list(alpha.values())
    grads = torch.autograd.grad((out * probe).sum(), [*params, *alphas], allow_unused=True)
    zero = [torch.zeros_like(p) if g is None else g for p, g in zip([*params, *alphas], grads)]
    n = len(params)
    return out.detach(), dict(zip(names, zero[:n])), torch.cat([g.flatten() for g in zero[n:]])


def _rel(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Largest absolute difference and the reference's largest magnitude (at least tiny)."""
    return float((a - b).abs().max()), max(float(b.abs().max()), 1e-12)


def _compare(reference: nn.Module, simple: nn.Module, x, probe, alpha, sampled, train: bool,
             rtol: float) -> list[_Diff]:
    """Output, parameter gradients (worst tensor) and alpha gradient, each with a relative tolerance."""
    ref_out, ref_g, ref_a = _run(reference, x, probe, alpha, sampled, train)
    out, grads, a = _run(simple, x, probe, alpha, sampled, train)
    if set(ref_g) != set(grads):
        missing = sorted(set(ref_g) ^ set(grads))
        return [_Diff("parameter names", float("inf"), 0.0, f"differ: {missing[:3]}")]
    d, s = _rel(out, ref_out)
    checks = [_Diff("output", d, rtol * s)]
    worst, where = -1.0, ""
    floor = 1e-4 * max(float(g.abs().max()) for g in ref_g.values())  # for gradients that are exactly 0
    for name in ref_g:
        d, s = _rel(grads[name], ref_g[name])
        if d / max(s, floor) > worst:
            worst, where = d / max(s, floor), name
    checks.append(_Diff("grad weights (worst tensor, relative)", worst, rtol, where))
    d, s = _rel(a, ref_a)
    checks.append(_Diff("grad alpha", d, rtol * s))
    return checks


def _vertex_diff(space, simple: nn.Module, vertex, channels: int, cells: int, x: torch.Tensor,
                 train: bool, dtype: torch.dtype) -> tuple[float, float]:
    """|simplified supernet at a vertex - discrete network with the same weights| and the output scale."""
    net = space.build_network(vertex, channels, cells, num_classes=10, bn=SEARCH_BN).to(dtype)
    space.load_vertex_weights(net, simple, vertex)
    mixing = Mixing(space.one_hot(vertex, dtype))
    simple.train(train)
    net.train(train)
    with torch.no_grad():
        ref = net(x)
        out = simple(x, mixing)
    return _rel(out, ref)


def _literal_reference(plain: nn.Module, rules: frozenset[str]) -> nn.Module:
    """A copy of ``plain`` whose mixed edges compute the full-mode formula directly, edge by edge.

    Written independently of the planner: per edge, candidates ``prefix -> conv -> bn`` (no affine, no
    running statistics, stride 1, dense) with the same parameter-free prefix form a group ``G`` of at
    least two, computed as ``W_G * bn(conv(prefix(x), sum_i w_i Khat_i))``; the rest run as in the
    plain edge (``none`` included: it is zero either way).
    """
    ref = copy.deepcopy(plain)
    for m in ref.modules():
        if type(m) is MixedEdge and rules - EXACT_RULES:
            m.forward = _literal_forward.__get__(m)  # type: ignore[method-assign]
            m.literal_rules = rules
    return ref


def _prefix_len(chain) -> int:
    k = 0
    while k < len(chain) and (
        isinstance(chain[k], (ReLU, Identity))
        or (isinstance(chain[k], (AvgPool, MaxPool)) and chain[k].stride == 1 and chain[k].kernel % 2)
    ):
        k += 1
    return k


def _literal_forward(edge: MixedEdge, x: torch.Tensor, weights: torch.Tensor, active=None) -> torch.Tensor:
    """``MixedEdge.forward`` with rule 3 applied literally (no stacking, no sharing, no caching)."""
    if active is not None:
        return MixedEdge.forward(edge, x, weights, active)
    groups: dict[tuple, list[int]] = {}
    separable: dict[tuple, list[int]] = {}
    blocks: dict[tuple, list[int]] = {}
    for i, spec in enumerate(edge.specs):
        k = _prefix_len(spec.chain)
        rest = spec.chain[k:]
        prefix = tuple(p for p in spec.chain[:k] if not isinstance(p, Identity))
        if (len(rest) == 2 and isinstance(rest[0], Conv) and isinstance(rest[1], BN) and not rest[0].depthwise
                and rest[0].stride == 1 and not rest[1].affine and not rest[1].track_running_stats
                and _rules.FLOAT_NORM in edge.literal_rules):
            groups.setdefault(prefix, []).append(i)
        if _stage_starts(spec.chain, k) and _rules.SHARED_POINTWISE in edge.literal_rules:
            separable.setdefault((prefix, rest[0].stride), []).append(i)
        if _block_body(rest) and _rules.BLOCK_MERGE in edge.literal_rules:
            blocks.setdefault((prefix, rest[3].stride, rest[6].out), []).append(i)
    floated = {i for members in groups.values() if len(members) >= 2 for i in members}
    floated |= {i for members in separable.values() if len(members) >= 2 for i in members}
    floated |= {i for members in blocks.values() if len(members) >= 2 for i in members}
    out: torch.Tensor | int = 0
    for i, op in enumerate(edge.ops):
        if i not in floated:
            out = out + weights[i] * op(x)
    for members in groups.values():
        if len(members) < 2:
            continue
        k = _prefix_len(edge.specs[members[0]].chain)
        z = edge.ops[members[0]][:k](x)
        convs = [edge.ops[i][k] for i in members]
        ext = max((c.kernel_size[0] - 1) * c.dilation[0] + 1 for c in convs)
        kernel: torch.Tensor | int = 0
        for i, c in zip(members, convs):
            kernel = kernel + weights[i] * _dense_unit(c.weight, c.dilation[0], ext)
        bn = edge.ops[members[0]][k + 1]
        total = sum(weights[i] for i in members)
        out = out + total * F.batch_norm(F.conv2d(z, kernel, padding=ext // 2), None, None, training=True,
                                         eps=bn.eps)
    for members in separable.values():
        if len(members) < 2:
            continue
        k = _prefix_len(edge.specs[members[0]].chain)
        out = out + _literal_stages(edge, [(i, k) for i in members], edge.ops[members[0]][:k](x), weights)
    for members in blocks.values():
        if len(members) >= 2:
            k = _prefix_len(edge.specs[members[0]].chain)
            out = out + _literal_block(edge, members, k, edge.ops[members[0]][:k](x), weights)
    return out


def _block_body(rest) -> bool:
    """``rest`` is an MBConv body with search bn: 1x1 conv (out), bn, relu, depthwise, bn, relu, 1x1 conv (out), bn."""
    if len(rest) != 8:
        return False
    kinds = (Conv, BN, ReLU, Conv, BN, ReLU, Conv, BN)
    if not all(isinstance(p, t) for p, t in zip(rest, kinds)):
        return False
    e, d, p = rest[0], rest[3], rest[6]
    return (e.kernel == 1 and not e.depthwise and d.depthwise and p.kernel == 1 and not p.depthwise
            and e.out is not None and p.out is not None
            and all(not b.affine and not b.track_running_stats for b in (rest[1], rest[4], rest[7])))


def _literal_block(edge: MixedEdge, members: list[int], k: int, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The merged-block formula literally: ``W_G * bn(P_w * relu(bn(D_w * relu(bn(E_w * z)))))``.

    ``E_w = sum_i w_i Ehat_i`` with every expand kernel's rows divided by their L2 norm and written into a
    zero kernel of the largest expansion (the extra output channels stay zero); ``D_w`` likewise per
    channel, each depthwise kernel written into the centre of a zero kernel of the largest size; ``P_w``
    with each project kernel's rows normalized and written into the first ``E_i`` input channels.
    """
    mods = [edge.ops[i] for i in members]
    e_max = max(m[k].weight.shape[0] for m in mods)
    size = max(m[k + 3].weight.shape[-1] for m in mods)
    out_ch = mods[0][k + 6].weight.shape[0]
    ew = z.new_zeros(e_max, z.shape[1], 1, 1)
    dw = z.new_zeros(e_max, 1, size, size)
    pw = z.new_zeros(out_ch, e_max, 1, 1)
    for i, m in zip(members, mods):
        e, d, p = m[k].weight, m[k + 3].weight, m[k + 6].weight
        n_e, kd = e.shape[0], d.shape[-1]
        off = (size - kd) // 2
        rows = lambda t: torch.sqrt((t * t).sum(dim=(1, 2, 3), keepdim=True))  # noqa: E731
        ew = ew + weights[i] * torch.cat([e / rows(e), e.new_zeros(e_max - n_e, *e.shape[1:])])
        dense = d.new_zeros(e_max, 1, size, size)
        dense[:n_e, :, off:off + kd, off:off + kd] = d / rows(d)
        dw = dw + weights[i] * dense
        wide = p.new_zeros(out_ch, e_max, 1, 1)
        wide[:, :n_e] = p / rows(p)
        pw = pw + weights[i] * wide
    stride = mods[0][k + 3].stride[0]
    bns = [mods[0][k + j] for j in (1, 4, 7)]
    h = F.relu(F.batch_norm(F.conv2d(z, ew), None, None, training=True, eps=bns[0].eps))
    h = F.relu(F.batch_norm(F.conv2d(h, dw, stride=stride, padding=size // 2, groups=e_max), None, None,
                            training=True, eps=bns[1].eps))
    h = F.batch_norm(F.conv2d(h, pw), None, None, training=True, eps=bns[2].eps)
    return sum(weights[i] for i in members) * h


def _stage_starts(chain, i: int) -> bool:
    """``chain[i:]`` starts with ``depthwise -> 1x1 -> search bn`` and every later part is ``relu -> stage``."""
    while True:
        if i + 3 > len(chain):
            return False
        dw, pw, bn = chain[i:i + 3]
        if not (isinstance(dw, Conv) and dw.depthwise and isinstance(pw, Conv) and pw.kernel == 1
                and not pw.depthwise and isinstance(bn, BN) and not bn.affine and not bn.track_running_stats):
            return False
        i += 3
        if i == len(chain):
            return True
        if not isinstance(chain[i], ReLU):
            return False
        i += 1


def _literal_stages(edge: MixedEdge, members: list[tuple[int, int]], z: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor | int:
    """Rule 4 literally: ``members`` = (candidate, position of its depthwise conv), all reading ``z``.

    ``h = bn(P_w (D_w * z))`` (several members: ``D_w = sum_i w_i Dhat_i`` as dense kernels of the largest
    extent, ``P_w = sum_i w_i Phat_i``, hats = scaled to unit RMS channel norm; one member: its own
    kernels); members ending here add ``w_i * h``; the rest continue on ``relu(h)``.
    """
    dws = [edge.ops[i][pos] for i, pos in members]
    pws = [edge.ops[i][pos + 1] for i, pos in members]
    stride = dws[0].stride[0]
    ext = max((c.kernel_size[0] - 1) * c.dilation[0] + 1 for c in dws)
    if len(members) == 1:
        dense_d = _dense(dws[0].weight, dws[0].dilation[0], ext)
        p = pws[0].weight
    else:
        dense_d = sum(weights[i] * _dense(_unit_rms(c.weight), c.dilation[0], ext) for (i, _), c in zip(members, dws))
        p = sum(weights[i] * _unit_rms(c.weight) for (i, _), c in zip(members, pws))
    y = F.conv2d(F.conv2d(z, dense_d, stride=stride, padding=ext // 2, groups=z.shape[1]), p)
    h = F.batch_norm(y, None, None, training=True, eps=edge.ops[members[0][0]][members[0][1] + 2].eps)
    out: torch.Tensor | int = 0
    going = []
    for i, pos in members:
        if pos + 3 == len(edge.specs[i].chain):
            out = out + weights[i] * h
        else:
            going.append((i, pos + 4))  # past the relu
    if going:
        out = out + _literal_stages(edge, going, F.relu(h), weights)
    return out


def _unit_rms(weight: torch.Tensor) -> torch.Tensor:
    return weight / torch.sqrt((weight * weight).sum() / weight.shape[0])


def _dense(weight: torch.Tensor, dilation: int, extent: int) -> torch.Tensor:
    """A (dilated) kernel as a dense ``extent``-square kernel, centred."""
    k = weight.shape[-1]
    dense = weight.new_zeros(*weight.shape[:2], extent, extent)
    off = (extent - ((k - 1) * dilation + 1)) // 2
    for a in range(k):
        for b in range(k):
            dense[:, :, off + a * dilation, off + b * dilation] = weight[:, :, a, b]
    return dense


def _dense_unit(weight: torch.Tensor, dilation: int, extent: int) -> torch.Tensor:
    """The kernel divided by its per-output-channel L2 norm, as a dense ``extent``-square kernel."""
    norms = torch.sqrt((weight * weight).sum(dim=(1, 2, 3), keepdim=True))
    return _dense(weight / norms, dilation, extent)

