"""SLOs and error budgets: specs (relia, Sloth, OpenSLO), budget and burn-rate math, Prometheus
rules, reports."""
