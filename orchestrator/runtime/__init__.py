"""Per-process duties: the leader's dispatcher and long-poll waiters, and the timer."""
