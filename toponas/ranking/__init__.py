"""Ranking architectures without training them: zero-cost indicators, supernet scores, rank correlations."""

from .correlation import average_ranks, kendall, spearman
from .runner import INDICATORS, Ranking, RankSettings, check_indicator, rank, sample_cells, summary

__all__ = ["INDICATORS", "RankSettings", "Ranking", "average_ranks", "check_indicator", "kendall", "rank",
           "sample_cells", "spearman", "summary"]
