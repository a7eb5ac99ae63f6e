"""Run the vendored axe-core in a Playwright page and read its findings."""

from __future__ import annotations

AXE_SCRIPT = "/static/vendor/axe-core-4.14.1.min.js"
# WCAG 2.1 A and AA plus axe's best practices; only these impacts fail a page.
FAILING_IMPACTS = ("serious", "critical")
RUN_AXE_JS = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


def axe_violations(page, base_url: str) -> list[dict]:
    """Every violation axe finds on the page as it is now (the script comes from our server)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Same origin, so the CSP (script-src 'self') lets it in.
        page.add_script_tag(url=f"{base_url}{AXE_SCRIPT}")
    return page.evaluate(RUN_AXE_JS)


def serious_violations(page, base_url: str) -> list[dict]:
    """The violations that fail a page: serious or critical."""
    return [v for v in axe_violations(page, base_url) if v["impact"] in FAILING_IMPACTS]


def describe(violations: list[dict]) -> str:
    """A readable list for an assertion message."""
    lines = []
    for v in violations:
        lines.append(f"{v['impact']} {v['id']}: {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {node['summary']}".replace("\n", " "))
    return "\n".join(lines)
