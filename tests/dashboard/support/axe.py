"""axe-core in a Playwright page: inject the vendored script and list the serious or critical violations.

The page's Content-Security-Policy refuses injected scripts, so checks run in a browser context created
with `bypass_csp=True` (the dashboard's own scripts are loaded from files either way)."""

from pathlib import Path

AXE = Path(__file__).with_name("axe-4.14.1.min.js")
BLOCKING = ("serious", "critical")


def serious_violations(page) -> list[dict]:
    """[{id, impact, help, targets}] of the serious and critical WCAG 2.x A/AA violations on the page."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
                resultTypes: ["violations"],
            });
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in BLOCKING]
