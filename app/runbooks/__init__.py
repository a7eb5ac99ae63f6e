"""Runbooks: named multi-step procedures from a YAML file, planned and audited as one."""
