"""Run collectors: build them from config, run passes, schedule them."""
