"""The merged verdict's rules, over plain rows as the balancer and metrics queries give them."""

from __future__ import annotations

from app.queries.verdict import VerdictRules, instance_verdict, service_verdict


def lb(state: str, *, kind="haproxy", status=None, check="", weight=1, sessions=0, stale=False):
    return {
        "balancer": "edge" if kind == "haproxy" else "push-nginx",
        "kind": kind,
        "backend": "be",
        "server": "s1",
        "state": state,
        "status": status or state.upper(),
        "check_status": check,
        "weight": weight,
        "sessions": sessions,
        "stale": stale,
    }


def test_haproxy_down_while_consul_passes_is_critical_and_names_the_balancer():
    verdict = instance_verdict("passing", [lb("down", check="L7STS")])
    assert verdict["health"] == "critical"
    [d] = verdict["disagreements"]
    assert d["source"] == "edge" and "DOWN (L7STS)" in d["says"] and not d["stale"]


def test_a_stale_balancer_still_disagrees_but_does_not_move_the_verdict():
    verdict = instance_verdict("passing", [lb("down", stale=True)])
    assert verdict["health"] == "passing"
    assert verdict["disagreements"][0]["stale"] is True


def test_nginx_down_is_an_operators_choice_not_a_failure():
    verdict = instance_verdict("passing", [lb("down", kind="nginx", status="down")])
    assert verdict["health"] == "passing"
    [d] = verdict["disagreements"]
    assert d["source"] == "push-nginx" and "upstream file" in d["says"]


def test_critical_in_consul_while_the_balancer_still_sends_traffic():
    verdict = instance_verdict("critical", [lb("up", check="L4OK", sessions=12)])
    assert verdict["health"] == "critical"
    [d] = verdict["disagreements"]
    assert d["traffic"] and "12 open connections" in d["says"]


def test_a_backup_server_is_not_said_to_send_traffic():
    backup = {**lb("up", kind="nginx", status="backup"), "backup": True}
    assert instance_verdict("critical", [backup])["disagreements"] == []


def test_a_drained_server_does_not_send_traffic_and_says_so():
    assert instance_verdict("critical", [lb("drain", status="DRAIN")])["disagreements"] == []
    drained = instance_verdict("passing", [lb("drain", status="DRAIN")])
    assert (
        drained["health"] == "passing" and "out of rotation" in drained["disagreements"][0]["says"]
    )


def test_agreement_has_no_disagreements():
    assert instance_verdict("passing", [lb("up", check="L7OK")]) == {
        "health": "passing",
        "disagreements": [],
    }
    assert instance_verdict("critical", [lb("down", check="L4CON")])["disagreements"] == []


def test_an_unchecked_instance_takes_the_balancers_check():
    assert instance_verdict("unknown", [lb("up", check="L7OK")])["health"] == "passing"
    assert instance_verdict("unknown", [])["health"] == "unknown"


def test_an_error_ratio_above_the_threshold_while_checks_pass_is_a_disagreement():
    rules = VerdictRules(error_ratio=0.05)
    red = {"error_ratio": 0.12, "rate_rps": 20.0, "stale": False}
    verdict = service_verdict("passing", [], red, [], rules)
    assert verdict["health"] == "warning"
    [d] = verdict["disagreements"]
    assert d["source"] == "prometheus" and "12.0%" in d["says"]
    quiet = {"error_ratio": 0.5, "rate_rps": 0.01, "stale": False}
    assert service_verdict("passing", [], quiet, [], rules)["disagreements"] == []
    below = {"error_ratio": 0.01, "rate_rps": 20.0, "stale": False}
    assert service_verdict("passing", [], below, [], rules)["disagreements"] == []


def test_the_service_takes_its_worst_instance_verdict_but_not_maintenance():
    rules = VerdictRules()
    instances = [{"health": "critical"}, {"health": "passing"}]
    assert service_verdict("passing", instances, None, [], rules)["health"] == "critical"
    assert (
        service_verdict("passing", [{"health": "maintenance"}], None, [], rules)["health"]
        == "passing"
    )


def test_a_firing_alert_while_checks_pass_is_a_disagreement():
    alert = {"name": "HighErrorRate", "state": "firing"}
    verdict = service_verdict("passing", [], None, [alert], VerdictRules())
    assert "HighErrorRate" in verdict["disagreements"][0]["says"]
    silenced = {"name": "HighErrorRate", "state": "suppressed"}
    assert service_verdict("passing", [], None, [silenced], VerdictRules())["disagreements"] == []
