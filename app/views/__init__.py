"""Flask blueprints: one module per area of the UI and API."""
