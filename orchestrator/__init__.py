"""orchestrator: a highly available workflow orchestrator replicated with Raft."""
