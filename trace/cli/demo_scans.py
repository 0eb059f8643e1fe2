"""Placeholder: `flask demo scans` (issue 5) attaches to the demo group."""

from trace.cli.demo import group

__all__ = ["group"]
