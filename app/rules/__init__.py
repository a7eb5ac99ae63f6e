"""Guarded automation: conditions held for a while propose or run a runbook within limits."""
