/*
 * Quarterdeck time-series charts, drawn with the vendored uPlot (static/vendor/uplot-*.js).
 * Plain JavaScript, loaded with `defer` after uPlot. Without it the page shows the chart's
 * fallback text (docs/ui.md).
 *
 * Contract:
 *   <figure class="chart" data-chart="push-connections">
 *     <div class="chart__plot"></div>
 *     <p class="chart__fallback">…text shown until (or unless) the chart is drawn…</p>
 *     <script type="application/json" data-chart-spec>{…}</script>
 *   </figure>
 *   spec: {"unit": "connections", "window_s": 3600, "times": [epoch s, …],
 *          "series": [{"key": "total", "label": "All services", "values": [n | null, …]}, …]}
 *   null is a gap (no number known, e.g. a stale source), never drawn as zero.
 *   Live append: any <script type="application/json" data-chart-append="push-connections">
 *   {"times": […], "series": [{"key", "label", "values"}]} in the document (the page's live
 *   part carries one) is merged after every htmx swap: points newer than the chart's last one
 *   are appended, points older than window_s are dropped.
 *
 * Everything shown comes from the page's JSON, never from markup: labels and tooltips are set
 * with textContent (uPlot's legend does the same), so names from the fleet stay text.
 */
(function () {
  "use strict";

  const root = document.documentElement;
  const charts = new Map();  // data-chart id -> {figure, spec, plot, observer}
  // Colours per series, in order, from static/css/charts.css (both themes define them).
  const SERIES_TOKENS = ["--chart-total", "--chart-1", "--chart-2", "--chart-3", "--chart-4",
    "--chart-5", "--chart-6", "--chart-7", "--chart-8"];

  function readJson(script) {
    try {
      return JSON.parse(script.textContent);
    } catch (e) {
      return null;
    }
  }

  function isSpec(value) {
    return Boolean(value && Array.isArray(value.times) && Array.isArray(value.series) &&
      value.series.every((s) => s && Array.isArray(s.values)));
  }

  function token(name, fallback) {
    const value = getComputedStyle(root).getPropertyValue(name).trim();
    return value || fallback;
  }

  function remPx() {
    return parseFloat(getComputedStyle(root).fontSize) || 16;
  }

  // Phone: a short chart; laptop: taller; wall mode scales with the root font size.
  function heightFor(width) {
    const rem = remPx();
    if (width < 560) return Math.round(11 * rem);
    return Math.round(Math.min(18 * rem, Math.max(13 * rem, width * 0.3)));
  }

  function formatValue(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "no data";
    return Math.round(value).toLocaleString() + (unit ? " " + unit : "");
  }

  function formatTime(epochS) {
    const d = new Date(epochS * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // A tooltip that follows the cursor: one line for the time, one per shown series.
  function tooltipPlugin(state) {
    let tip = null;
    function init(u) {
      tip = document.createElement("div");
      tip.className = "chart__tooltip";
      tip.setAttribute("role", "status");
      tip.hidden = true;
      u.over.appendChild(tip);
      u.over.addEventListener("mouseleave", () => { tip.hidden = true; });
    }
    function setCursor(u) {
      const idx = u.cursor.idx;
      if (idx === null || idx === undefined || u.cursor.left < 0) {
        tip.hidden = true;
        showLatest(u);  // away from the chart, the legend reads the newest values
        return;
      }
      tip.replaceChildren();
      const when = document.createElement("div");
      when.className = "chart__tooltip-time";
      when.textContent = formatTime(u.data[0][idx]);
      tip.appendChild(when);
      u.series.forEach(function (s, i) {
        if (i === 0 || !s.show) return;
        const line = document.createElement("div");
        line.className = "chart__tooltip-line";
        const swatch = document.createElement("span");
        swatch.className = "chart__swatch";
        swatch.style.background = s._stroke || s.stroke;
        const label = document.createElement("span");
        label.className = "chart__tooltip-label";
        label.textContent = s.label;
        const value = document.createElement("span");
        value.className = "chart__tooltip-value";
        value.textContent = formatValue(u.data[i][idx], "");
        line.append(swatch, label, value);
        tip.appendChild(line);
      });
      tip.hidden = false;
      // Beside the cursor, on whichever side has room; never past the chart's edges (on a
      // phone it may cover the axis labels, not leave the card).
      const overWidth = u.over.clientWidth;
      const width = tip.offsetWidth;
      const left = u.cursor.left;
      let x = left + 12;
      if (x + width > overWidth) x = left - 12 - width;
      x = Math.max(-u.over.offsetLeft, Math.min(x, overWidth - width));
      tip.style.left = x + "px";
      const y = Math.min(u.cursor.top - 8, u.over.clientHeight - tip.offsetHeight);
      tip.style.top = Math.max(0, y) + "px";
    }
    return { hooks: { init: init, setCursor: setCursor } };
  }

  function showLatest(u) {
    const last = u.data[0].length - 1;
    if (last >= 0) u.setLegend({ idx: last }, false);
  }

  function seriesOptions(spec) {
    const unit = spec.unit || "";
    return [{ label: "Time", value: (u, v) => (v === null ? "--" : formatTime(v)) }].concat(
      spec.series.map(function (s, i) {
        const stroke = token(SERIES_TOKENS[Math.min(i, SERIES_TOKENS.length - 1)], "#888");
        return {
          label: String(s.label),
          stroke: stroke,
          width: i === 0 ? 2.5 : 1.5,
          points: { show: false },
          spanGaps: false,
          value: (u, v) => formatValue(v, unit),
        };
      })
    );
  }

  function dataOf(spec) {
    return [spec.times.slice()].concat(spec.series.map((s) => s.values.slice()));
  }

  function build(state) {
    const figure = state.figure;
    const target = figure.querySelector(".chart__plot");
    if (!target) return;
    if (state.plot) state.plot.destroy();
    const width = Math.max(200, Math.floor(target.clientWidth || figure.clientWidth || 300));
    const axisColor = token("--text-muted", "#666");
    const gridColor = token("--border-subtle", "#ddd");
    const axis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 },
      font: Math.round(0.75 * remPx()) + "px " + token("--font-sans", "sans-serif"),
    };
    const opts = {
      width: width,
      height: heightFor(width),
      series: seriesOptions(state.spec),
      // The time axis has two lines of labels (time, then date): room for both at any scale.
      axes: [
        Object.assign({ size: Math.round(3.2 * remPx()), space: Math.round(4.5 * remPx()) }, axis),
        Object.assign({ size: Math.round(3.5 * remPx()) }, axis),
      ],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      plugins: [tooltipPlugin(state)],
    };
    state.plot = new window.uPlot(opts, dataOf(state.spec), target);
    showLatest(state.plot);
    figure.setAttribute("data-chart-ready", "true");
    const fallback = figure.querySelector(".chart__fallback");
    if (fallback) fallback.hidden = true;
  }

  function resize(state) {
    if (!state.plot) return;
    const target = state.figure.querySelector(".chart__plot");
    const width = Math.max(200, Math.floor(target.clientWidth));
    if (width === state.plot.width) return;
    state.plot.setSize({ width: width, height: heightFor(width) });
  }

  function setUp(figure) {
    const id = figure.getAttribute("data-chart");
    const script = figure.querySelector("script[data-chart-spec]");
    const spec = script && readJson(script);
    if (!id || !isSpec(spec)) return;
    const state = { figure: figure, spec: spec, plot: null, observer: null };
    charts.set(id, state);
    build(state);
    if (window.ResizeObserver) {
      state.observer = new ResizeObserver(() => resize(state));
      state.observer.observe(figure);
    }
  }

  // Merge newer points into a chart's spec; returns true when its series changed (rebuild).
  function merge(spec, update) {
    const last = spec.times.length ? spec.times[spec.times.length - 1] : -Infinity;
    const keys = spec.series.map((s) => s.key);
    let rebuild = false;
    for (const s of update.series) {
      if (keys.indexOf(s.key) < 0) {
        spec.series.push({ key: s.key, label: String(s.label), values: spec.times.map(() => null) });
        keys.push(s.key);
        rebuild = true;
      }
    }
    update.times.forEach(function (t, i) {
      if (!(t >= last)) return;
      // A refresh within the second of the newest point is a newer count of that second:
      // it replaces the point (times are whole seconds), or the chart would keep the old one.
      const same = t === last;
      if (!same) spec.times.push(t);
      for (const s of spec.series) {
        const from = update.series.find((u) => u.key === s.key);
        const v = from ? from.values[i] : null;
        const value = v === undefined ? null : v;
        if (same) s.values[s.values.length - 1] = value;
        else s.values.push(value);
      }
    });
    const windowS = spec.window_s || 3600;
    const newest = spec.times.length ? spec.times[spec.times.length - 1] : 0;
    let drop = 0;
    while (drop < spec.times.length && spec.times[drop] < newest - windowS) drop += 1;
    if (drop) {
      spec.times.splice(0, drop);
      for (const s of spec.series) s.values.splice(0, drop);
    }
    return rebuild;
  }

  function appendAll() {
    document.querySelectorAll("script[data-chart-append]").forEach(function (script) {
      const state = charts.get(script.getAttribute("data-chart-append"));
      const update = readJson(script);
      if (!state || !isSpec(update)) return;
      if (merge(state.spec, update)) build(state);
      else if (state.plot) {
        state.plot.setData(dataOf(state.spec));
        if (state.plot.cursor.idx === null || state.plot.cursor.left < 0) showLatest(state.plot);
      }
    });
  }

  function rebuildAll() {
    charts.forEach(build);
  }

  function init() {
    if (!window.uPlot) return;  // the fallback text stays
    document.querySelectorAll("figure[data-chart]").forEach(setUp);
    appendAll();
    document.addEventListener("htmx:after:swap", appendAll);
    // Theme or wall mode changed: the colours and sizes come from CSS, so draw again.
    new MutationObserver(rebuildAll).observe(root, {
      attributes: true, attributeFilter: ["data-theme", "class"],
    });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rebuildAll);
  }

  // For tests and other scripts: what a chart holds now.
  window.QuarterdeckCharts = Object.freeze({
    describe: function (id) {
      const state = charts.get(id);
      if (!state) return null;
      return {
        points: state.spec.times.length,
        last_time: state.spec.times[state.spec.times.length - 1] || null,
        series: state.spec.series.map((s) => ({
          key: s.key, label: s.label, last: s.values[s.values.length - 1],
        })),
        width: state.plot ? state.plot.width : 0,
        height: state.plot ? state.plot.height : 0,
      };
    },
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
