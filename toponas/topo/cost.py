"""The cost model the rules choose by: multiply-adds per output pixel plus a fixed cost per call.

It decides how stacked kernels are grouped into convolution calls (:func:`partition_calls`) and
depthwise kernels into depthwise calls (:func:`partition_depthwise`): merging two calls pads the
smaller kernels to the larger extent (exact: zeros around them), done only when the saved call
overhead outweighs the added multiply-adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from .items import ConvBN, ConvCall

#: Cost of one extra convolution call, in multiply-adds per output pixel. On CPU (2 threads, NB201
#: shapes) a 1x1 call and a 3x3 call of 3C outputs each measured clearly faster than one padded 3x3
#: call of 6C outputs, so the overhead of a call is small against padding; it decides only for tiny
#: channel counts or kernels of nearly equal size.
CALL_OVERHEAD_MACS = 1024


def call_cost(channels: int, outputs: int, kernel: int) -> int:
    """Multiply-adds per output pixel of one convolution call, plus the call overhead."""
    return channels * kernel * kernel * outputs + CALL_OVERHEAD_MACS


def partition_calls(items: Sequence[ConvBN], channels: int) -> tuple[ConvCall, ...]:
    """Group stacked items into convolution calls: one per geometry, merged where cheaper.

    Merging two calls pads the smaller kernels to the larger extent (exact: zeros around them); it is
    done only when the saved call overhead outweighs the added multiply-adds (:func:`call_cost`).
    """
    groups: dict[tuple[int, int], list[ConvBN]] = {}
    for it in items:
        groups.setdefault((it.kernel, it.dilation), []).append(it)
    calls = [(geo, members) for geo, members in groups.items()]

    def cost(geo: tuple[int, int], members: list[ConvBN]) -> int:
        return call_cost(channels, channels * len(members), geo[0])

    while len(calls) > 1:
        best = None
        for a in range(len(calls)):
            for b in range(a + 1, len(calls)):
                (ga, ma), (gb, mb) = calls[a], calls[b]
                ext = max(it.extent for it in ma + mb)
                gain = cost(ga, ma) + cost(gb, mb) - cost((ext, 1), ma + mb)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, a, b, ext)
        if best is None:
            break
        _, a, b, ext = best
        merged = ((ext, 1), calls[a][1] + calls[b][1])
        calls = [c for i, c in enumerate(calls) if i not in (a, b)]
        calls.insert(a, merged)
    return tuple(ConvCall(tuple(members), geo[0], geo[1]) for geo, members in calls)


def depthwise_cost(channels: int, kernel: int) -> int:
    """Multiply-adds per output pixel of one depthwise call of ``kernel`` taps a side, plus the call overhead."""
    return channels * kernel * kernel + CALL_OVERHEAD_MACS


def _merged_geometry(geos: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The smallest ``(kernel, dilation)`` holding every geometry: same dilation, else dense."""
    dilations = {d for _, d in geos}
    if len(dilations) == 1:
        return max(k for k, _ in geos), dilations.pop()
    return max((k - 1) * d + 1 for k, d in geos), 1


def partition_depthwise(geos: Sequence[tuple[int, int]], channels: int) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Depthwise calls for members of the given geometries: one per geometry, merged where cheaper.

    Rule 2 for depthwise kernels: members in one call have their (weighted) kernels summed, each
    embedded in the call's geometry. Merging two calls is done when :func:`depthwise_cost` says the
    merged call costs less than the two (the plan chooses by cost: a 9x9 kernel from a dilated 5x5
    may cost more than it saves).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, geo in enumerate(geos):
        groups.setdefault(geo, []).append(i)
    calls = list(groups.items())

    def cost(geo: tuple[int, int]) -> int:
        return depthwise_cost(channels, geo[0])

    while len(calls) > 1:
        best = None
        for a in range(len(calls)):
            for b in range(a + 1, len(calls)):
                geo = _merged_geometry([calls[a][0], calls[b][0]])
                gain = cost(calls[a][0]) + cost(calls[b][0]) - cost(geo)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, a, b, geo)
        if best is None:
            break
        _, a, b, geo = best
        merged = (geo, sorted(calls[a][1] + calls[b][1]))
        calls = [c for i, c in enumerate(calls) if i not in (a, b)]
        calls.insert(a, merged)
    return tuple((geo[0], geo[1], tuple(members)) for geo, members in calls)

