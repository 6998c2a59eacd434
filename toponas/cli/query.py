"""``toponas search`` for query-based strategies: the ``--oracle/--queries/--supernet`` options and the
dispatch on the strategy's ``contract`` class attribute (``"supernet"`` or ``"query"``), done once here.

``search.py`` applies :func:`query_dispatch` to its ``search`` command and lists :data:`SEARCH_STRATEGIES`
as the ``--strategy`` choices; nothing else there knows query-based search.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..query import QUERY_STRATEGIES, QueryConfig, QueryInterrupted, QuerySearch, summary
from ..query.oracle import ORACLES
from ..strategies import STRATEGIES
from .errors import SIGINT_EXIT, fail
from .layers import given, parse_pairs

#: Every strategy ``toponas search`` runs, by name: supernet strategies and query-based ones.
STRATEGY_CLASSES: dict[str, type] = {
    **{name: STRATEGIES.get(name) for name in STRATEGIES.names()},
    **{name: QUERY_STRATEGIES.get(name) for name in QUERY_STRATEGIES.names()},
}
SEARCH_STRATEGIES = sorted(STRATEGY_CLASSES)

QUERY_ONLY = ("oracle", "queries", "supernet")
# Options of the search command that a query-based run uses, and those it passes to --oracle train.
QUERY_USES = ("space", "strategy", "dataset", "data", "seed", "out", "benchmark", "device", "cache_dir", "hyper",
              "resume", "no_progress")
TRAIN_OPTIONS = ("subset", "epochs", "batch_size", "channels", "cells")


def _flag(name: str) -> str:
    return "--" + {"config_file": "config", "hyper": "hp"}.get(name, name).replace("_", "-")


def query_dispatch(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the query options to the search command and route each run by its strategy's ``contract``."""
    command = click.option("--supernet", type=click.Path(),
                           help="--oracle supernet: a finished search run whose one-shot weights score cells.")(command)
    command = click.option("--queries", type=int,
                           help="Query-based strategies: distinct cells to query [default: 500].")(command)
    command = click.option("--oracle", type=click.Choice(ORACLES),
                           help="Query-based strategies (ga-nas, rea, random): what answers a query "
                                "[default: benchmark].")(command)

    @functools.wraps(command)
    def dispatch(**options: Any) -> Any:
        ctx = click.get_current_context()
        cls = STRATEGY_CLASSES[options["strategy"]]
        return ENTRIES[cls.contract](ctx, command, options)

    return dispatch


def _supernet_entry(ctx: click.Context, command: Callable[..., Any], options: dict[str, Any]) -> Any:
    """A supernet strategy: the search command as it is, without the query options."""
    named = [_flag(n) for n in QUERY_ONLY if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if named:
        fail(f"{', '.join(named)} go(es) with a query-based strategy ({', '.join(QUERY_STRATEGIES.names())}), "
             f"not {options['strategy']}")
    return command(**{k: v for k, v in options.items() if k not in QUERY_ONLY})


def _query_entry(ctx: click.Context, command: Callable[..., Any], options: dict[str, Any]) -> None:
    """A query-based strategy: :class:`toponas.query.QuerySearch` with the options it uses."""
    oracle = options["oracle"] or "benchmark"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        fail(f"{options['strategy']} is a query-based strategy and does not run over several processes; run it "
             "without torchrun (or spread many runs with toponas sweep)")
    unused = [n for n in options if n not in QUERY_USES + QUERY_ONLY + TRAIN_OPTIONS and given(ctx, n)]
    if oracle != "train":
        unused += [n for n in TRAIN_OPTIONS if given(ctx, n)]
    if oracle != "supernet" and given(ctx, "supernet"):
        unused.append("supernet")
    if unused:
        fail(f"{', '.join(_flag(n) for n in unused)} do(es) not apply to {options['strategy']} with --oracle "
             f"{oracle} (train options go with --oracle train, --supernet with --oracle supernet)")
    try:
        config = QueryConfig(
            strategy=options["strategy"], space=options["space"], oracle=oracle,
            queries=500 if options["queries"] is None else options["queries"], seed=options["seed"],
            out=options["out"], benchmark=options["benchmark"], dataset=options["dataset"], data=options["data"],
            cache_dir=options["cache_dir"], device=options["device"], supernet=options["supernet"],
            train_options={n: options[n] for n in TRAIN_OPTIONS if given(ctx, n)},
            hyper=parse_pairs(options["hyper"], "--hp"))
        result = QuerySearch(config, resume=options["resume"], log=click.echo).run()
    except QueryInterrupted as e:
        fail(str(e), SIGINT_EXIT)
    click.echo(summary(result))
    click.echo(f"wrote {Path(result['out_dir']) / 'result.json'}")


ENTRIES: dict[str, Callable[[click.Context, Callable[..., Any], dict[str, Any]], Any]] = {
    "supernet": _supernet_entry,
    "query": _query_entry,
}
