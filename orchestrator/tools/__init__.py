"""Operational tools: a local cluster, the demo, bench, chaos, failover and the history checker.

They drive replicas from outside, as an operator or a test does. They import the server's
modules (config, core commands, the replication adapter); nothing in the server imports them.
"""
