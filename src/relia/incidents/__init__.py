"""Findings and (later) incidents: what relia found, scored and explained."""

from relia.incidents.model import Finding, FindingKind, Severity

__all__ = ["Finding", "FindingKind", "Severity"]
