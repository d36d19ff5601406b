"""The history checker lives in orchestrator/tools/verify.py (shared with `orchestrator chaos`)."""

from orchestrator.tools.verify import check_history, check_replicas_agree, time_until_success

__all__ = ["check_history", "check_replicas_agree", "time_until_success"]
