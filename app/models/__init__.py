"""Quarterdeck's tables, one module per domain; importing this registers them all."""

from app.models.balancers import Balancer, BalancerMember, BalancerProxyState, BalancerRollup
from app.models.base import Base, utcnow
from app.models.catalog import Instance, Service, ServiceUpstream
from app.models.health import Check, HealthTransition
from app.models.metrics import FiringAlertRow, PushGauge, ScrapeTarget, ServiceRedFigure
from app.models.samples import Sample
from app.models.sources import CollectorRun, SourceStatus
from app.models.users import ROLES, ApiToken, SignInFailure, User, UserSession

__all__ = [
    "ROLES",
    "ApiToken",
    "Balancer",
    "BalancerMember",
    "BalancerProxyState",
    "BalancerRollup",
    "Base",
    "Check",
    "FiringAlertRow",
    "CollectorRun",
    "HealthTransition",
    "PushGauge",
    "Instance",
    "Sample",
    "ScrapeTarget",
    "Service",
    "ServiceRedFigure",
    "ServiceUpstream",
    "SignInFailure",
    "SourceStatus",
    "User",
    "UserSession",
    "utcnow",
]
