"""Broker bridges: the event log meets an external broker (issue 15 item 7).

base.py is the interface (a Broker is a source of sequenced messages and a sink of event
records) and the broker-agnostic loops the leader runs: the source proposes IngestEvent per
message (exactly once into the log: the core appends only past the replicated mark), the sink
publishes the records of its prefix and proposes AdvanceSink (at least once out). nats.py is
the NATS JetStream broker; runner.py runs every configured bridge on the leader only.
"""
