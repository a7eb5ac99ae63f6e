"""The merged health verdict: what Consul, the balancers and Prometheus each say, and where they
disagree.

An instance's own `health` is its source's (Consul's checks). The verdict weighs in what each
balancer does with it and, for the service, the error ratio Prometheus measures. Each
disagreement names the dissenting source and what it says, in words an on-call engineer can
act on. A stale source still shows its disagreement (marked stale) but does not move the
merged health: an old opinion must not overrule a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Worst first; "maintenance" is deliberate, so it ranks below a failure but above passing.
_RANK = {"critical": 0, "warning": 1, "maintenance": 2, "unknown": 3, "passing": 4}
_OUT_OF_ROTATION = ("maint", "drain")


@dataclass(frozen=True)
class VerdictRules:
    """The thresholds the verdict applies (config `[verdict]`)."""

    error_ratio: float = 0.05  # 0-1: above it, Prometheus disagrees with passing checks
    min_rate_rps: float = 0.1  # below this request rate an error ratio means little


def _worst(states: Iterable[str]) -> str:
    return min(states, key=lambda s: _RANK.get(s, 3))


def _disagreement(source: str, says: str, *, stale: bool = False, **more) -> dict:
    entry = {"source": source, "says": says, "stale": stale}
    entry.update(more)
    return entry


def _while(health: str) -> str:
    return "while nothing checks it" if health == "unknown" else "while the checks pass"


def _lb_words(row: Mapping) -> str:
    status = row.get("status") or row.get("state") or "?"
    check = row.get("check_status")
    return f"{status} ({check})" if check else str(status)


def instance_verdict(health: str, lb_rows: Sequence[Mapping]) -> dict:
    """Merge an instance's own health with what each balancer member of it says.

    HAProxy's DOWN is a failed check of its own: it makes the verdict critical. nginx OSS does
    no active checks, so its `down` is an operator's choice: a disagreement, not a failure.
    """
    opinions = [health]
    disagreements: list[dict] = []
    healthy = health in ("passing", "warning")
    for row in lb_rows:
        source = str(row.get("balancer") or "balancer")
        stale = bool(row.get("stale"))
        state = row.get("state")
        where = f"{row.get('backend')}/{row.get('server')}"
        sessions = row.get("sessions")
        if state == "down" and row.get("kind") != "nginx":
            if not stale:
                opinions.append("critical")
            if healthy or health == "unknown":
                disagreements.append(
                    _disagreement(
                        source, f"{where} is {_lb_words(row)}: it gets no traffic", stale=stale
                    )
                )
        elif state == "down":
            if healthy:
                disagreements.append(
                    _disagreement(
                        source,
                        f"{where} is marked down in the upstream file while {health}",
                        stale=stale,
                    )
                )
        elif state in _OUT_OF_ROTATION:
            if healthy:
                disagreements.append(
                    _disagreement(
                        source,
                        f"{where} is {_lb_words(row)}: out of rotation while {health}",
                        stale=stale,
                    )
                )
        elif state in ("up", "nolb"):
            if state == "nolb" and not stale:
                opinions.append("warning")
            # A backup server gets traffic only once every primary is gone.
            serving = row.get("weight") != 0 and state == "up" and not row.get("backup")
            if serving and health in ("critical", "maintenance"):
                traffic = f", {sessions} open connections" if sessions else ""
                disagreements.append(
                    _disagreement(
                        source,
                        f"{where} is {_lb_words(row)} and still sends it traffic{traffic}",
                        stale=stale,
                        traffic=True,
                    )
                )
            elif health == "unknown" and row.get("check_status") and not stale:
                opinions.append("passing")  # the balancer's own check is the only evidence
    if health == "unknown" and len(opinions) > 1:
        opinions = opinions[1:]
    return {"health": _worst(opinions), "disagreements": disagreements}


def service_verdict(
    health: str,
    instance_verdicts: Sequence[Mapping],
    red: Mapping | None,
    alerts: Sequence[Mapping],
    rules: VerdictRules,
) -> dict:
    """Merge a service's rollup with its instances' verdicts, its RED figures and its alerts."""
    # As the rollup does: the worst failure counts; maintenance and unknown instances do not.
    failing = [v["health"] for v in instance_verdicts if v["health"] in ("critical", "warning")]
    opinions = [health, *failing]
    disagreements: list[dict] = []
    checks_pass = health in ("passing", "warning", "unknown")
    if red is not None:
        ratio, rate = red.get("error_ratio"), red.get("rate_rps")
        stale = bool(red.get("stale"))
        if (
            ratio is not None
            and ratio > rules.error_ratio
            and (rate or 0) >= rules.min_rate_rps
            and checks_pass
        ):
            if not stale:
                opinions.append("warning")
            disagreements.append(
                _disagreement(
                    red.get("source") or "prometheus",
                    f"error ratio {ratio:.1%} at {rate:.1f} req/s, above the "
                    f"{rules.error_ratio:.1%} threshold, {_while(health)}",
                    stale=stale,
                )
            )
    for alert in alerts:
        if alert.get("state") in ("firing", "active") and checks_pass:
            disagreements.append(
                _disagreement("prometheus", f"alert {alert.get('name')} is firing {_while(health)}")
            )
    return {"health": _worst(opinions), "disagreements": disagreements}


def rules_from(config) -> VerdictRules:
    """Read the `[verdict]` section."""
    return VerdictRules(error_ratio=config.error_ratio, min_rate_rps=config.min_rate_rps)


def apply_verdicts(body: dict, rules: VerdictRules) -> dict:
    """Add `verdict` to a service's JSON (DESIGN §5) and to each of its instances; return it.

    Instance disagreements are also listed in the service's, each naming its instance, so a
    page or a script sees every disagreement in one place.
    """
    verdicts = []
    everything: list[dict] = []
    for instance in body.get("instances", []):
        if instance.get("gone_at"):
            instance["verdict"] = {"health": instance["health"], "disagreements": []}
            continue
        verdict = instance_verdict(instance["health"], instance.get("lb") or [])
        instance["verdict"] = verdict
        verdicts.append(verdict)
        everything += [{**d, "instance": instance["id"]} for d in verdict["disagreements"]]
    service = service_verdict(
        body["health"], verdicts, body.get("red"), body.get("alerts") or [], rules
    )
    service["disagreements"] = everything + service["disagreements"]
    body["verdict"] = service
    return body
