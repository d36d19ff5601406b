"""The history checker lives in orchestrator/verify.py (shared with `orchestrator chaos`)."""

from orchestrator.verify import check_history, check_replicas_agree, time_until_success

__all__ = ["check_history", "check_replicas_agree", "time_until_success"]
