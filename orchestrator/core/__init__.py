"""The pure, deterministic state machine: apply(state, command) -> outcome.

Nothing here does I/O, reads a clock, logs, uses randomness or threads. Everything the machine
needs arrives inside the command batch (including the leader-stamped cluster time).
"""
