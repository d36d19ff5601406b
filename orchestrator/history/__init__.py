"""The durable history: every replica's own SQLite copy of the workflows that left replicated
memory, written from the operations its apply produced (core/history_ops.py), and the search
over memory and history together (search.py)."""

from .search import History, HistoryUnavailable, SearchPage, SearchQuery

__all__ = ["History", "HistoryUnavailable", "SearchPage", "SearchQuery"]
