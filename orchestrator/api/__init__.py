"""Thin gRPC servicers: proto <-> command, validation, error -> status, forwarding to the leader."""
