"""Running several `quarterdeck serve` replicas: one leader runs the jobs, all serve pages."""
