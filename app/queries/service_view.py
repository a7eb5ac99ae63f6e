"""One service as its API answer and its page show it: the catalog's instances and checks, each
instance's balancer rows, the RED figures and alerts, and the merged verdict over them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.config import ProbeConfig
from app.queries.balancers import balancer_only_instances_json, lb_rows_by_instance
from app.queries.probes import apply_probe_verdict, probes_json
from app.queries.services import ServiceDetail, service_detail_json
from app.queries.sources import SourceView
from app.queries.verdict import VerdictRules, apply_verdicts


def service_view_json(
    db: Session,
    found: ServiceDetail,
    sources: dict[str, SourceView],
    now: datetime,
    rules: VerdictRules,
    probes: Sequence[ProbeConfig] = (),
) -> dict:
    """Render DESIGN §5 `GET /api/v1/services/<name>`, verdicts included."""
    name = found.service.name
    lb = lb_rows_by_instance(db, name, sources, now)
    body = service_detail_json(found, sources.get(found.service.source), lb, sources)
    known = {i.source_id for i in found.current_instances}
    body["instances"].extend(balancer_only_instances_json(lb, known))
    body = apply_verdicts(body, rules)
    return apply_probe_verdict(body, probes_json(db, probes, now, service=name))
