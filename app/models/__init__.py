"""Quarterdeck's tables, one module per domain; importing this registers them all."""

from app.models.audit import ActionLock, ActionRequestKey, AuditEntry
from app.models.balancers import (
    Balancer,
    BalancerBackendRollup,
    BalancerMember,
    BalancerProxyState,
    BalancerRollup,
)
from app.models.base import Base, utcnow
from app.models.catalog import Instance, Service, ServiceUpstream
from app.models.health import Check, HealthTransition
from app.models.idempotency import (
    IdemEventRow,
    IdempotencyKeyRow,
    InflightKeyRow,
    RedisSnapshotRow,
)
from app.models.leadership import JobRun, LeaderRow
from app.models.metrics import FiringAlertRow, PushGauge, ScrapeTarget, ServiceRedFigure
from app.models.probes import ProbeResultRow, ProbeState, ProbeTransition
from app.models.releases import Release
from app.models.reports import ReportDelivery, ReportRow
from app.models.rules import RuleProposal, RuleState
from app.models.samples import Sample
from app.models.sources import CollectorRun, SourceStatus
from app.models.span_red import SpanRedMinute, SpanRedProgress, SpanRedRecent
from app.models.traces import Span, Trace
from app.models.users import ROLES, ApiToken, SignInFailure, User, UserSession

__all__ = [
    "ROLES",
    "ActionLock",
    "ActionRequestKey",
    "AuditEntry",
    "ApiToken",
    "Balancer",
    "BalancerBackendRollup",
    "BalancerMember",
    "BalancerProxyState",
    "BalancerRollup",
    "Base",
    "Check",
    "FiringAlertRow",
    "CollectorRun",
    "HealthTransition",
    "IdemEventRow",
    "IdempotencyKeyRow",
    "InflightKeyRow",
    "JobRun",
    "LeaderRow",
    "RedisSnapshotRow",
    "PushGauge",
    "ProbeResultRow",
    "ProbeState",
    "ProbeTransition",
    "Instance",
    "RuleProposal",
    "RuleState",
    "ReportDelivery",
    "ReportRow",
    "Release",
    "Sample",
    "ScrapeTarget",
    "Service",
    "ServiceRedFigure",
    "ServiceUpstream",
    "SignInFailure",
    "SourceStatus",
    "Span",
    "SpanRedMinute",
    "SpanRedProgress",
    "SpanRedRecent",
    "Trace",
    "User",
    "UserSession",
    "utcnow",
]
