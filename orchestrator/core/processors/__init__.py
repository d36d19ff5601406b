"""Processors: one module per domain. Each reads the state, decides, and emits events
(context.Ctx.emit); the engine (engine.py) routes every command to its processor."""
