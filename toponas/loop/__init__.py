"""The search loop, its checkpoints and its result (`toponas.search` is the entry point)."""

from .search import Search, SearchDiverged, SearchInterrupted, search
from .result import SearchResult

__all__ = ["Search", "SearchDiverged", "SearchInterrupted", "SearchResult", "search"]
