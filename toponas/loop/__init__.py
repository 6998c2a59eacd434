"""The search loop, its checkpoints and its result (`toponas.search` is the entry point)."""

from .result import SearchResult
from .search import Search, SearchDiverged, SearchInterrupted, search

__all__ = ["Search", "SearchDiverged", "SearchInterrupted", "SearchResult", "search"]
