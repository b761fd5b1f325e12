"""Findings and incidents: what relia found, scored and explained, and how it groups."""

from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity

__all__ = ["Finding", "FindingKind", "Incident", "IncidentStatus", "Severity"]
