/*
 * The dependency map's look (static/js/map.js draws with it): health states and their glyphs,
 * colours read from quarterdeck.css's custom properties, sizes from the root font size (so
 * the theme and wall mode restyle the graph), number formats, and the Cytoscape style sheet.
 * Pure functions of the page's CSS; nothing here touches the graph or fleet text.
 */
(function () {
  "use strict";

  const root = document.documentElement;
  // Health, worst first; each has a glyph so colour is never the only sign.
  const HEALTH = {
    critical: { glyph: "✕", word: "critical" },
    warning: { glyph: "▲", word: "warning" },
    maintenance: { glyph: "‖", word: "maintenance" },
    unknown: { glyph: "?", word: "unknown" },
    passing: { glyph: "✓", word: "passing" },
  };

  // ---------------------------------------------------------------- colours and sizes

  const probe = document.createElement("canvas").getContext("2d");

  // Any CSS colour as [r, g, b, a] (the browser parses it; Cytoscape wants plain values).
  function rgba(css) {
    probe.fillStyle = "#000";
    probe.fillStyle = css;
    const value = probe.fillStyle;
    if (value[0] === "#") {
      return [1, 3, 5].map((i) => parseInt(value.slice(i, i + 2), 16)).concat([1]);
    }
    const parts = value.replace(/[^\d.,]/g, "").split(",").map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  }

  function token(name, fallback) {
    return getComputedStyle(root).getPropertyValue(name).trim() || fallback;
  }

  // A tint as the opaque colour it shows over the page's surface.
  function solid(name, fallback) {
    const [r, g, b, a] = rgba(token(name, fallback));
    const [sr, sg, sb] = rgba(token("--surface", "#ffffff"));
    const mix = (c, s) => Math.round(c * a + s * (1 - a));
    return "rgb(" + mix(r, sr) + "," + mix(g, sg) + "," + mix(b, sb) + ")";
  }

  function remPx() {
    return parseFloat(getComputedStyle(root).fontSize) || 16;
  }

  function palette() {
    const colours = { health: {} };
    for (const state of Object.keys(HEALTH)) {
      colours.health[state] = {
        fill: solid("--" + state + "-bg", "#eeeeee"),
        border: solid("--" + state + "-fill", "#888888"),
        text: solid("--" + state, "#333333"),
      };
    }
    Object.assign(colours, {
      surface: solid("--surface", "#ffffff"),
      surface2: solid("--surface-2", "#f6f7f9"),
      text: solid("--text", "#15191e"),
      muted: solid("--text-muted", "#555e6b"),
      faint: solid("--text-faint", "#7d8591"),
      border: solid("--border", "#d4d8de"),
      accent: solid("--accent", "#0b62d6"),
      critical: solid("--critical-fill", "#cf222e"),
      warning: solid("--warning-fill", "#d99a06"),
      edge: solid("--text-faint", "#7d8591"),
      font: token("--font-sans", "sans-serif"),
    });
    return colours;
  }

  // ---------------------------------------------------------------- formatting

  function formatRate(rps) {
    if (rps === null || rps === undefined) return null;
    if (rps === 0) return "0 rps";
    if (rps < 0.01) return "<0.01 rps";
    if (rps < 10) return rps.toFixed(rps < 1 ? 2 : 1) + " rps";
    if (rps < 10000) return Math.round(rps).toLocaleString("en") + " rps";
    return (rps / 1000).toFixed(1) + "k rps";
  }

  function formatRatio(ratio) {
    if (ratio === null || ratio === undefined) return null;
    if (ratio === 0) return "0%";
    const pct = ratio * 100;
    if (pct < 0.1) return "<0.1%";
    return (pct < 10 ? pct.toFixed(1) : Math.round(pct)) + "%";
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined) return null;
    if (ms < 1) return "<1 ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function edgeFigures(edge) {
    return [formatRate(edge.rate_rps), formatRatio(edge.error_ratio), formatMs(edge.p95_ms)]
      .filter(Boolean);
  }

  function textWidth(text, px, weight) {
    probe.font = (weight || 600) + " " + px + "px " + token("--font-sans", "sans-serif");
    return Math.max(...text.split("\n").map((line) => probe.measureText(line).width));
  }


  function sizesNow() {
    const rem = remPx();
    return { node: Math.round(rem * 0.8), edge: Math.round(rem * 0.68) };
  }

  function styleOf(colours, sizes) {
    const style = [
      {
        selector: "node",
        style: {
          shape: "round-rectangle",
          width: "data(w)",
          height: "data(h)",
          label: "data(label)",
          "text-wrap": "wrap",
          "text-valign": "center",
          "text-halign": "center",
          "font-family": colours.font,
          "font-size": sizes.node,
          "font-weight": 600,
          "line-height": 1.35,
          color: colours.text,
          "background-color": colours.surface,
          "border-width": 1.5,
          "border-color": colours.border,
          "min-zoomed-font-size": 7,
        },
      },
    ];
    for (const [state, c] of Object.entries(colours.health)) {
      style.push({
        selector: 'node[health = "' + state + '"]',
        style: { "background-color": c.fill, "border-color": c.border, color: c.text },
      });
    }
    style.push(
      // The border's pattern repeats what the colour says: double for critical, thick for
      // warning, dotted for maintenance, dashed for unknown.
      { selector: 'node[health = "critical"]', style: { "border-width": 4, "border-style": "double" } },
      { selector: 'node[health = "warning"]', style: { "border-width": 2.5 } },
      { selector: 'node[health = "maintenance"]', style: { "border-width": 2, "border-style": "dotted" } },
      { selector: 'node[health = "unknown"]', style: { "border-width": 1.5, "border-style": "dashed" } },
      {
        selector: 'node[kind = "group"]',
        style: {
          shape: "round-rectangle",
          "corner-radius": 10,
          "outline-width": 3,
          "outline-offset": 2,
          "outline-color": colours.border,
        },
      },
      { selector: 'node[diff = "appeared"]', style: { "underlay-color": colours.accent, "underlay-padding": 5, "underlay-opacity": 0.35, "underlay-shape": "round-rectangle" } },
      { selector: 'node[diff = "vanished"]', style: { opacity: 0.55, "border-style": "dashed" } },
      { selector: 'node[diff = "changed"]', style: { "underlay-color": colours.warning, "underlay-padding": 5, "underlay-opacity": 0.35, "underlay-shape": "round-rectangle" } },
      {
        selector: "node.focus",
        style: { "underlay-color": colours.accent, "underlay-padding": 6, "underlay-opacity": 0.45, "underlay-shape": "round-rectangle" },
      },
      {
        selector: "node:selected",
        style: { "underlay-color": colours.accent, "underlay-padding": 6, "underlay-opacity": 0.45, "underlay-shape": "round-rectangle" },
      },
      {
        selector: "node.match",
        style: { "overlay-color": colours.accent, "overlay-padding": 5, "overlay-opacity": 0.22, "overlay-shape": "round-rectangle" },
      },
      {
        selector: "edge",
        style: {
          width: "data(w)",
          "curve-style": "bezier",
          "line-color": colours.edge,
          "target-arrow-color": colours.edge,
          "target-arrow-shape": "triangle",
          "arrow-scale": 0.9,
          label: "data(label)",
          "font-family": colours.font,
          "font-size": sizes.edge,
          color: colours.muted,
          "text-background-color": colours.surface,
          "text-background-opacity": 0.92,
          "text-background-padding": 2,
          "text-background-shape": "round-rectangle",
          "min-zoomed-font-size": 8,
          "text-events": "yes",
        },
      },
      { selector: 'edge[errors = "some"]', style: { "line-color": colours.warning, "target-arrow-color": colours.warning, color: colours.health.warning.text } },
      { selector: 'edge[errors = "high"]', style: { "line-color": colours.critical, "target-arrow-color": colours.critical, color: colours.health.critical.text } },
      { selector: 'edge[drift = "declared_only"]', style: { "line-style": "dashed", "line-dash-pattern": [7, 5], opacity: 0.8 } },
      { selector: 'edge[drift = "observed_only"]', style: { "line-style": "dotted", "line-dash-pattern": [2, 4], "target-arrow-shape": "triangle-tee" } },
      { selector: 'edge[diff = "appeared"]', style: { "underlay-color": colours.accent, "underlay-padding": 4, "underlay-opacity": 0.3 } },
      { selector: 'edge[diff = "vanished"]', style: { opacity: 0.5, "line-style": "dashed", "line-dash-pattern": [3, 6] } },
      { selector: 'edge[diff = "changed"]', style: { "underlay-color": colours.warning, "underlay-padding": 4, "underlay-opacity": 0.3 } },
      // Fan-outs put their labels by the callee, fan-ins by the caller: apart, not in a heap.
      { selector: 'edge[labelEnd = "target"]', style: { label: "", "target-label": "data(label)", "target-text-offset": "data(labelOffset)" } },
      { selector: 'edge[labelEnd = "source"]', style: { label: "", "source-label": "data(label)", "source-text-offset": "data(labelOffset)" } },
      { selector: 'edge[label *= "\n"]', style: { "text-wrap": "wrap", "line-height": 1.25 } },
      { selector: "edge:selected", style: { "underlay-color": colours.accent, "underlay-padding": 4, "underlay-opacity": 0.3 } },
      // The whole fleet zoomed out: quiet edges (no errors, no drift) lose their labels.
      { selector: "edge.hush", style: { label: "", "source-label": "", "target-label": "", opacity: 0.5 } },
      { selector: "edge.mute", style: { label: "", "source-label": "", "target-label": "" } },
      { selector: ".faded", style: { opacity: 0.15, "text-opacity": 0.2 } },
      { selector: "edge.faded", style: { label: "", "source-label": "", "target-label": "" } }
    );
    return style;
  }

  window.QuarterdeckMapStyle = Object.freeze({
    HEALTH, token, remPx, palette, textWidth, sizesNow, styleOf, formatRate, formatRatio,
    formatMs, edgeFigures,
  });
})();
