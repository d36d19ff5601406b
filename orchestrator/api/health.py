"""Whether this replica serves: the standard gRPC health status and cluster status' `serving`."""

from __future__ import annotations

from ..config import HealthSettings
from ..replication.api import Replica


def serving_state(replica: Replica, settings: HealthSettings) -> tuple[bool, str]:
    """Serving only with a known leader and a replica that has caught up; else why not."""
    if replica.apply_error:
        return False, replica.apply_error
    if replica.journal_error:
        return False, replica.journal_error
    st = replica.status()
    if not st.leader:
        return False, "no leader"
    if not replica.fresh():
        return False, "not in contact with the leader or a majority"
    if not st.ready:
        return False, "catching up with the leader"
    if st.role == "LEADER" and not replica.leader_ready():
        return False, "leader epoch not yet committed"
    lag = st.commit_index - st.last_applied
    if lag > settings.max_apply_lag_entries:
        return False, f"applying: {lag} entries behind"
    return True, ""
