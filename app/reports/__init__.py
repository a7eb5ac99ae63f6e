"""The on-call handoff report: its figures, its HTML and CSV, storing and delivering it."""
