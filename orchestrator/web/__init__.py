"""The web UI every replica can serve (config `ui_port`; docs/operations.md, "Web UI")."""

from .server import WebUI, for_replica

__all__ = ["WebUI", "for_replica"]
