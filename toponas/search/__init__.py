"""The search loop, its checkpoints and its result."""

from .loop import Search, SearchDiverged, SearchInterrupted, search
from .result import SearchResult

__all__ = ["Search", "SearchDiverged", "SearchInterrupted", "SearchResult", "search"]
