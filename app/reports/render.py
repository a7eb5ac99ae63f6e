"""Turn a report's figures into its HTML (for e-mail clients: inline CSS, no script) and CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.reports.figures import SLO_BURN_WINDOWS

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# Colours of the states, picked to read on white in every mail client (no CSS variables there).
COLOURS = {
    "passing": "#1a7f37",
    "warning": "#9a6700",
    "critical": "#cf222e",
    "none": "#d0d7de",
    "bar": "#0b62d6",
}

_environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    # Fleet text (service names, check output, keys) is untrusted: escape everything.
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _percent(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "no data"
    return f"{value * 100:.{digits}f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _when(value: str | None, same_day_as: str | None = None) -> str:
    """Format an RFC 3339 time for people; only the time when it falls on `same_day_as`'s day."""
    if not value:
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if same_day_as and same_day_as[:10] == value[:10]:
        return at.strftime("%H:%M UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _availability_colour(value: float | None) -> str:
    if value is None:
        return COLOURS["none"]
    if value >= 0.999:
        return COLOURS["passing"]
    if value >= 0.99:
        return COLOURS["warning"]
    return COLOURS["critical"]


# An SLO's state as the report says it (the UI's slo_badge words) and its colour.
SLO_STATES = {
    "fast": "fast burn",
    "slow": "slow burn",
    "ok": "within budget",
    "no_data": "no data",
}
SLO_COLOURS = {
    "fast": COLOURS["critical"],
    "slow": COLOURS["warning"],
    "ok": COLOURS["passing"],
    "no_data": COLOURS["none"],
}


def _burn(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}×"


_environment.filters.update(percent=_percent, duration=_duration, when=_when, burn=_burn)
_environment.globals.update(
    colours=COLOURS,
    availability_colour=_availability_colour,
    slo_states=SLO_STATES,
    slo_colours=SLO_COLOURS,
    slo_windows=SLO_BURN_WINDOWS,
)


# Rows the HTML lists at most per table, so a mail stays readable (and under the size past
# which mail clients clip it); the CSV and the API have every row.
HTML_ROWS = 100


def render_html(figures: dict, *, title: str, link: str = "") -> str:
    """Render the report as one self-contained HTML document."""
    template = _environment.get_template("reports/email.html")
    peak = max((b["connections"] or 0 for b in figures["push"]["chart"]), default=0)
    # Services that were up throughout need no row of their own: they are counted.
    troubled = [r for r in figures["availability"] if r["availability"] != 1.0]
    perfect = len(figures["availability"]) - len(troubled)
    incidents = figures["incidents"]
    if len(incidents) > HTML_ROWS:
        longest = sorted(incidents, key=lambda i: -i["duration_s"])[:HTML_ROWS]
        incidents = sorted(longest, key=lambda i: (i["start_at"], i["service"], i["kind"]))
    return template.render(
        f=figures,
        title=title,
        link=link,
        chart_peak=peak,
        services=troubled[:HTML_ROWS],
        services_cut=max(0, len(troubled) - HTML_ROWS),
        services_perfect=perfect,
        incidents=incidents,
        incidents_cut=len(figures["incidents"]) - len(incidents),
    )


def render_text(figures: dict, *, title: str, link: str = "") -> str:
    """Render the summary as plain text, for mail clients that show no HTML."""
    s = figures["summary"]
    lines = [
        title,
        f"{_when(figures['period']['start_at'])} to {_when(figures['period']['end_at'])}",
        "",
        f"Fleet availability: {_percent(s['fleet_availability'])} over {s['services']} services",
        f"Incidents: {s['incidents']} ({s['incidents_ongoing']} ongoing)",
        f"Actions taken: {s['actions']}",
        f"Idempotency conflicts: {s['conflicts']}",
        f"Push-connection peak: {s['push_peak'] if s['push_peak'] is not None else 'no data'}",
    ]
    # A report stored before the SLO section was added has none, and may still be delivered.
    slo = figures.get("slo", [])
    if slo:
        lines.append(f"SLOs burning: {s['slo_burning']} of {len(slo)}")
    lines.append("")
    burning = [r for r in slo if r["state"] in ("fast", "slow")]
    for r in burning:
        left = r["availability"]["error_budget_left"]
        lines.append(f"- {r['service']} SLO: {SLO_STATES[r['state']]}, "
                     f"{_percent(left, 1)} of the error budget left")  # fmt: skip
    if burning:
        lines.append("")
    for incident in figures["incidents"][:20]:
        cause = incident["cause"]
        end = _when(incident["end_at"]) if incident["end_at"] else "ongoing"
        lines.append(
            f"- {incident['service']}: {_when(incident['start_at'])} to {end}, "
            f"{cause['check'] or 'unknown check'}: {cause['output']}"
        )
    if link:
        lines += ["", f"The whole report: {link}"]
    return "\n".join(lines) + "\n"


def render_csv(figures: dict) -> str:
    """Render every section as rows of one CSV: section, then that section's columns."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    period = figures["period"]
    w.writerow(["section", "field", "value"])
    w.writerow(["period", "start_at", period["start_at"]])
    w.writerow(["period", "end_at", period["end_at"]])
    for key, value in figures["summary"].items():
        w.writerow(["summary", key, "" if value is None else value])
    w.writerow([])
    w.writerow(
        ["section", "service", "availability", "observed_s", "critical_s", "incidents", "probes"]
    )
    for r in figures["availability"]:
        probes = "; ".join(
            f"{p['name']}={p['availability']:.6f} ({p['results']} results)" for p in r["probes"]
        )
        availability = "" if r["availability"] is None else f"{r['availability']:.6f}"
        w.writerow(["availability", r["service"], availability, r["observed_s"], r["critical_s"],
                    r["incidents"], probes])  # fmt: skip
    w.writerow([])
    w.writerow(["section", "service", "kind", "start_at", "end_at", "duration_s", "instance",
                "check", "cause"])  # fmt: skip
    for i in figures["incidents"]:
        c = i["cause"]
        w.writerow(["incident", i["service"], i["kind"], i["start_at"], i["end_at"] or "",
                    i["duration_s"], c["instance"], c["check"], c["output"]])  # fmt: skip
    w.writerow([])
    w.writerow(["section", "at", "actor", "action", "target", "status", "reason", "id"])
    for a in figures["actions"]["entries"]:
        w.writerow(["action", a["at"], a["actor"], a["action"], a["target"], a["status"],
                    a["reason"], a["id"]])  # fmt: skip
    w.writerow([])
    w.writerow(["section", "service", "key", "count", "kinds"])
    for k in figures["conflicts"]["top"]:
        w.writerow(["conflict", k["service"], k["key"], k["count"], " ".join(k["kinds"])])
    for kind, n in figures["conflicts"]["counts"].items():
        w.writerow(["conflict_kind", kind, "", n, ""])
    w.writerow([])
    w.writerow(["section", "balancer", "backend", "connections", "at"])
    for p in figures["push"]["peaks"]:
        w.writerow(["push_peak", p["balancer"], p["backend"], p["connections"], p["at"]])
    w.writerow([])
    w.writerow(["section", "service", "operation", "count", "errors", "mean_ms", "p95_ms",
                "max_ms", "slowest_trace_id"])  # fmt: skip
    for o in figures["slowest_operations"]:
        w.writerow(["operation", o["service"], o["operation"], o["count"], o["errors"],
                    o["mean_ms"], o["p95_ms"], o["max_ms"], o["slowest_trace_id"]])  # fmt: skip
    w.writerow([])
    w.writerow(["section", "service", "objective_kind", "sli", "window_d", "objective",
                "error_budget_left", "budget_spent", "state",
                *(f"burn_{window}" for window in SLO_BURN_WINDOWS), "threshold_ms",
                "problem"])  # fmt: skip
    for r in figures["slo"]:
        for kind, o in (("availability", r["availability"]), ("latency", r["latency"])):
            if o is None:
                continue
            threshold = f"{o['threshold_ms']:g}" if kind == "latency" else ""
            w.writerow(["slo", r["service"], kind, r["sli"], r["window_d"], o["objective"],
                        _ratio(o["error_budget_left"]), _ratio(o["budget_spent"]), o["state"],
                        *(_ratio(o["burn_rate"][window], 3) for window in SLO_BURN_WINDOWS),
                        threshold, r["problem"]])  # fmt: skip
    return _defuse_formulas(out.getvalue())


def _ratio(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _defuse_formulas(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: fleet text must not."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    for row in csv.reader(io.StringIO(text)):
        w.writerow([_defuse(cell) for cell in row])
    return out.getvalue()


def _defuse(cell: str) -> str:
    if cell[:1] in ("=", "+", "@", "\t", "\r") or (cell[:1] == "-" and not _is_number(cell)):
        return "'" + cell
    return cell


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
