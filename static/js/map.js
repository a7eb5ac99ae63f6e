/*
 * The dependency map, drawn with the vendored Cytoscape.js and its dagre layout
 * (static/vendor/cytoscape-*.js) in the look of static/js/map-style.js. Plain JavaScript,
 * loaded with `defer` after those three. Without it the page shows the server-rendered table
 * of nodes and edges (templates/map/_table.html).
 *
 * Contract:
 *   <figure class="map" data-map data-api-url="/api/v1/map" data-page-url="/map"
 *           data-services-url="/services" data-traces-url="/traces" data-error-ratio="0.05">
 *     <div class="map__canvas"></div> <p class="map__status"></p> <div class="map__tooltip"></div>
 *   </figure>
 *   <script type="application/json" id="map-data">: the API's answer for the page's own URL,
 *   drawn first without asking again (the server renders the table from the same answer).
 *   <form id="map-filters"> with inputs named service, hops, unhealthy, since, compare: the
 *   page's query (DESIGN §5 GET /api/v1/map). Every filter state lives in the URL: a change
 *   updates history (back/forward redraws) and asks the API again with the same query.
 *
 * Everything the map shows comes from the API's JSON. Names from the fleet are painted on the
 * canvas by Cytoscape (text, never markup); the tooltip, the side panel and the status line
 * are built with textContent only. No fleet text goes through innerHTML.
 */
(function () {
  "use strict";

  const root = document.documentElement;
  const PARAMS = ["service", "hops", "unhealthy", "since", "compare", "limit"];
  // Passed on from the URL but not set by the form: the API's node limit before grouping.
  const URL_ONLY = ["limit"];
  const DEFAULT_HOPS = "1";
  // Colours, sizes, number formats and the Cytoscape style sheet: static/js/map-style.js.
  const {
    HEALTH, remPx, palette, textWidth, sizesNow, styleOf, formatRate, formatRatio, formatMs,
    edgeFigures,
  } = window.QuarterdeckMapStyle || {};
  const EVIDENCE_WORDS = {
    traces: "seen in traces",
    consul: "declared as a Consul Connect upstream",
    prometheus: "from the Prometheus edge query",
  };
  const DRIFT_WORDS = {
    declared_only: "declared in Consul but no traffic seen in the window",
    observed_only: "traffic seen but not declared as an upstream",
  };
  const DIFF_WORDS = {
    appeared: "new since the comparison window",
    vanished: "gone since the comparison window",
    changed: "changed since the comparison window",
  };

  let figure, form, cy, tooltip, statusLine, panel, notes;
  let emptyPanel = [];    // the panel's text while nothing is selected
  let tableOpen = false;  // whether the person unfolded the table (kept across refreshes)
  let current = null;     // the last API answer drawn
  let loading = null;     // AbortController of the request in flight
  let drawnAt = 0;

  // ---------------------------------------------------------------- state <-> URL and form

  function stateFromUrl() {
    const query = new URLSearchParams(window.location.search);
    const state = {};
    for (const name of PARAMS) {
      const value = (query.get(name) || "").trim();
      if (value) state[name] = value;
    }
    if (state.unhealthy && !["1", "true"].includes(state.unhealthy.toLowerCase())) {
      delete state.unhealthy;
    } else if (state.unhealthy) {
      state.unhealthy = "true";
    }
    return state;
  }

  function stateFromForm() {
    const state = {};
    const data = new FormData(form);
    const url = stateFromUrl();
    for (const name of PARAMS) {
      const value = URL_ONLY.includes(name) ? url[name] : String(data.get(name) || "").trim();
      if (value) state[name] = value;
    }
    if (state.unhealthy) state.unhealthy = "true";
    if (!state.service || state.hops === DEFAULT_HOPS) delete state.hops;
    return state;
  }

  function fillForm(state) {
    for (const name of PARAMS) {
      const control = form.elements.namedItem(name);
      if (!control) continue;
      if (control.type === "checkbox") control.checked = Boolean(state[name]);
      else control.value = state[name] || (name === "hops" ? DEFAULT_HOPS : "");
    }
    syncHopsControl(state);
  }

  function syncHopsControl(state) {
    const hops = form.elements.namedItem("hops");
    if (hops) hops.disabled = !state.service;
    const clear = document.querySelector("[data-map-clear-focus]");
    if (clear) clear.hidden = !state.service;
  }

  function queryOf(state) {
    const query = new URLSearchParams();
    for (const name of PARAMS) if (state[name]) query.set(name, state[name]);
    return query.toString();
  }

  // The page's own URL keeps parameters that are not the map's (e.g. ?wall=1).
  function pageUrl(state) {
    const query = new URLSearchParams(window.location.search);
    for (const name of PARAMS) query.delete(name);
    for (const [name, value] of new URLSearchParams(queryOf(state))) query.set(name, value);
    const text = query.toString();
    return figure.dataset.pageUrl + (text ? "?" + text : "");
  }

  function sameState(a, b) {
    return queryOf(a) === queryOf(b);
  }

  function apply(state, how) {
    const previous = stateFromUrl();
    fillForm(state);
    if (how !== "pop") {
      const url = pageUrl(state);
      if (sameState(previous, state)) window.history.replaceState(state, "", url);
      else window.history.pushState(state, "", url);
    }
    load(state);
    followTable(state);
  }

  // The table (the page's live part) shows the URL's map: point its refreshes at the new URL,
  // and fetch it now if it is open (a folded one is fetched when it opens).
  function followTable(state) {
    const table = document.getElementById("map-table");
    if (!table) return;
    table.dataset.liveSrc = pageUrl(state);
    if (table.open) refreshTable(table);
  }

  function refreshTable(table) {
    if (!window.htmx || tableQueryOf(table) === queryOf(stateFromUrl())) return;
    window.htmx.ajax("GET", table.dataset.liveSrc, { source: table, target: table, swap: "outerHTML" });
  }

  function tableQueryOf(table) {
    const query = new URLSearchParams(table.dataset.mapQuery || "");
    const state = {};
    for (const name of PARAMS) if (query.get(name)) state[name] = query.get(name);
    return queryOf(state);
  }

  // After a live refresh (or one of ours) the table brings the map of its query: redraw from it.
  function onSwap() {
    const table = document.getElementById("map-table");
    if (!table || !cy) return;
    if (tableOpen && !table.open) table.open = true;
    const state = stateFromUrl();
    if (tableQueryOf(table) !== queryOf(state)) return;
    const data = readEmbedded();
    if (data) refresh(data, state);
  }

  // An element's comparison with the earlier window, or null ("same" is no news).
  function diffOf(item) {
    const diff = item && item.diff;
    if (!diff || typeof diff !== "object" || typeof diff.status !== "string") return null;
    return diff.status === "same" ? null : diff;
  }

  function healthOf(node) {
    return HEALTH[node.health] ? node.health : "unknown";
  }

  // A group node stands for services the whole-fleet view could not draw one by one
  // (app/queries/map_layout.py): {"kind": "group", "group": {key, by, members, sample, ...}}.
  function isGroup(node) {
    return node.kind === "group";
  }

  function groupOf(node) {
    return (isGroup(node) && node.group && typeof node.group === "object") ? node.group : {};
  }

  function memberCount(node) {
    const members = groupOf(node).members;
    return typeof members === "number" ? members : null;
  }

  function nodeName(node) {
    if (!isGroup(node)) return String(node.id);
    const group = groupOf(node);
    if (group.by === "remainder") return "other services";
    const key = String(group.key || String(node.id).replace(/^group:/, ""));
    return group.by === "prefix" ? key + "-*" : key;
  }

  // ---------------------------------------------------------------- elements

  function edgeLabel(edge, compact) {
    const figures = edgeFigures(edge);
    // On a phone the label takes two short lines rather than one long one.
    let text = !figures.length ? "no traffic"
      : compact ? figures[0] + (figures.length > 1 ? "\n" + figures.slice(1).join(" · ") : "")
        : figures.join(" · ");
    if (edge.drift === "declared_only") text = "declared, " + text;
    else if (edge.drift === "observed_only") text = "⚠ " + text;
    const diff = diffOf(edge);
    if (diff && diff.status === "appeared") text = "+ new · " + text;
    else if (diff && diff.status === "vanished") text = "− gone · " + text;
    else if (diff && diff.status === "changed") text = "Δ " + text;
    return text;
  }

  function nodeLabel(node) {
    const health = healthOf(node);
    let text = HEALTH[health].glyph + " " + nodeName(node);
    if (isGroup(node)) {
      const count = memberCount(node);
      text += "\n" + (count === null ? "group" : plural(count, "service"));
      const bad = groupOf(node).health_counts || {};
      const worst = ["critical", "warning"].filter((h) => bad[h]).map((h) => bad[h] + " " + HEALTH[h].glyph);
      if (worst.length) text += " · " + worst.join(" ");
    }
    const diff = diffOf(node);
    if (diff && diff.status === "appeared") text += "\n+ new";
    else if (diff && diff.status === "vanished") text += "\n− gone";
    else if (diff && diff.status === "changed") text += "\nΔ changed";
    return text;
  }

  function elementsOf(data, sizes) {
    const elements = [];
    const ids = new Set();
    for (const node of data.nodes || []) {
      const id = String(node.id);
      if (ids.has(id)) continue;
      ids.add(id);
      const label = nodeLabel(node);
      const lines = label.split("\n").length;
      const group = isGroup(node);
      const diff = diffOf(node);
      elements.push({
        group: "nodes",
        data: {
          id: id,
          label: label,
          health: healthOf(node),
          kind: group ? "group" : "service",
          diff: diff ? diff.status : "",
          w: Math.ceil(textWidth(label, sizes.node) + sizes.node * 2.2),
          h: Math.ceil(sizes.node * (1.35 * lines + 1.3)),
          api: node,
        },
      });
    }
    (data.edges || []).forEach(function (edge) {
      const source = String(edge.source);
      const target = String(edge.target);
      if (!ids.has(source) || !ids.has(target)) return;
      const rate = typeof edge.rate_rps === "number" ? edge.rate_rps : 0;
      const diff = diffOf(edge);
      elements.push({
        group: "edges",
        data: {
          id: "edge " + JSON.stringify([source, target]),
          source: source,
          target: target,
          label: edgeLabel(edge, false),
          labelWide: edgeLabel(edge, false),
          labelCompact: edgeLabel(edge, true),
          quiet: errorLevel(edge.error_ratio) === "none" && !edge.drift && !diff ? "yes" : "no",
          drift: edge.drift || "",
          diff: diff ? diff.status : "",
          errors: errorLevel(edge.error_ratio),
          // Width grows with the log of the rate: 0.1 rps and 1,000 rps both stay readable.
          w: 1.2 + Math.min(4.5, Math.log10(1 + rate * 10)),
          api: edge,
        },
      });
    });
    return elements;
  }

  function errorLevel(ratio) {
    const limit = parseFloat(figure.dataset.errorRatio) || 0.05;
    if (typeof ratio !== "number") return "none";
    if (ratio >= limit) return "high";
    if (ratio >= limit / 5) return "some";
    return "none";
  }

  // ---------------------------------------------------------------- layout

  function narrow() {
    return figure.querySelector(".map__canvas").clientWidth < 640;
  }

  // Ranks far enough apart for the labels that will show between them; the whole fleet shows
  // its labels only zoomed in, so it packs its ranks closer.
  function rankSep(direction) {
    const rem = remPx();
    if (direction === "TB") return Math.round(rem * 4.5);
    if (hushing()) return Math.round(rem * 7);
    const sizes = sizesNow();
    let widest = 0;
    cy.edges().forEach((edge) => {
      widest = Math.max(widest, textWidth(edge.data("label"), sizes.edge, 400));
    });
    return Math.round(Math.min(18 * rem, Math.max(5 * rem, widest + 2.5 * rem)));
  }

  // Only the whole fleet hushes its quiet edges; a focused map labels every edge.
  function hushing() {
    return !stateFromUrl().service && cy.edges().length > 24;
  }

  function hush() {
    if (!cy) return;
    const on = hushing() && cy.zoom() < 0.95;
    cy.batch(() => {
      const quiet = cy.edges('[quiet = "yes"]');
      const loud = cy.edges('[quiet = "no"]');
      if (on) {
        quiet.addClass("hush");
        loud.addClass("mute");
      } else {
        quiet.removeClass("hush");
        loud.removeClass("mute");
      }
    });
  }

  // Top to bottom, labels take two short lines; left to right, one.
  function placeLabels(direction) {
    const rem = remPx();
    const sizes = sizesNow();
    cy.batch(() => cy.edges().forEach((edge) => {
      const label = direction === "TB" ? edge.data("labelCompact") : edge.data("labelWide");
      edge.data("label", label);
      const out = edge.source().outdegree(false);
      const into = edge.target().indegree(false);
      const end = out > 1 && into === 1 ? "target" : into > 1 && out === 1 ? "source" : "mid";
      edge.data("labelEnd", end);
      const along = direction === "TB" ? 1.4 * rem : textWidth(label, sizes.edge, 400) / 2;
      edge.data("labelOffset", Math.round(along + 1.1 * rem));
    }));
  }

  function layoutOptions(direction) {
    const rem = remPx();
    return {
      name: "dagre",
      rankDir: direction,
      nodeSep: Math.round(rem * (direction === "TB" ? 1.4 : 1.1)),
      rankSep: rankSep(direction),
      edgeSep: Math.round(rem * 0.6),
      // network-simplex draws the tidiest ranks; past a few hundred edges it costs seconds,
      // where longest-path costs milliseconds.
      ranker: cy.edges().length > LAYOUT_EDGES ? "longest-path" : "network-simplex",
      animate: false,
      fit: true,
      padding: Math.round(rem * 1.5),
    };
  }

  // ---------------------------------------------------------------- drawing

  function ensureGraph() {
    if (cy) return;
    cy = window.cytoscape({
      container: figure.querySelector(".map__canvas"),
      style: styleOf(palette(), sizesNow()),
      minZoom: 0.05,
      maxZoom: 3,
      boxSelectionEnabled: false,
      autoungrabify: false,
      textureOnViewport: false,
      pixelRatio: "auto",
    });
    cy.on("tap", "node", (event) => onNodeTap(event.target));
    cy.on("tap", "edge", (event) => showEdge(event.target));
    cy.on("tap", (event) => {
      if (event.target === cy) clearSelection();
    });
    cy.on("mouseover", "node", (event) => hover(event.target, event));
    cy.on("mouseover", "edge", (event) => hover(event.target, event));
    cy.on("mousemove", "node, edge", (event) => placeTooltip(event));
    cy.on("mouseout", "node, edge", () => unhover());
    cy.on("viewport", () => { tooltip.hidden = true; });
    cy.on("zoom", hush);
  }

  function draw(data, state) {
    ensureGraph();
    const started = performance.now();
    current = data;
    cy.batch(() => {
      cy.elements().remove();
      cy.add(elementsOf(data, sizesNow()));
      if (state.service && cy.getElementById(state.service).nonempty()) {
        cy.getElementById(state.service).addClass("focus");
      }
    });
    runLayout();
    drawnAt = performance.now() - started;
    figure.dataset.mapDrawnAtMs = String(Math.round(performance.now()));
    figure.dataset.mapNodes = String(cy.nodes().length);
    figure.dataset.mapEdges = String(cy.edges().length);
    figure.dataset.mapQuery = queryOf(state);
    figure.setAttribute("data-map-ready", "true");
    figure.removeAttribute("aria-busy");
    showNotes(data, state);
    showStatus(data, state);
    offerNames(data);
    highlightSearch();
    if (state.service && cy.getElementById(state.service).nonempty()) {
      showNode(cy.getElementById(state.service));
    } else {
      clearSelection();
    }
  }

  // A live refresh: the same services and calls keep their places (nothing jumps on a wall
  // screen, a zoomed-in view stays put); only what they say changes. Anything added or gone
  // draws the graph again.
  function refresh(data, state) {
    if (!cy || !current || figure.dataset.mapQuery !== queryOf(state)) {
      draw(data, state);
      return;
    }
    const next = elementsOf(data, sizesNow());
    const ids = new Set(next.map((e) => e.data.id));
    const same = ids.size === cy.elements().length && cy.elements().every((e) => ids.has(e.id()));
    if (!same) {
      draw(data, state);
      return;
    }
    current = data;
    cy.batch(() => {
      for (const element of next) cy.getElementById(element.data.id).data(element.data);
    });
    placeLabels(figure.dataset.mapDirection || "LR");
    hush();
    showNotes(data, state);
    showStatus(data, state);
    const selected = cy.elements(":selected");
    if (selected.nonempty()) {
      if (selected[0].isNode()) showNode(selected[0]);
      else showEdge(selected[0]);
    }
    figure.dataset.mapRefreshes = String(Number(figure.dataset.mapRefreshes || 0) + 1);
  }

  const READABLE_ZOOM = 0.7;
  const REFRESH_MS = 30000;
  const RANK = ["critical", "warning", "maintenance", "unknown", "passing"];

  function worstNode() {
    let worst = cy.nodes()[0];
    cy.nodes().forEach((n) => {
      const better = RANK.indexOf(n.data("health")) < RANK.indexOf(worst.data("health")) ||
        (n.data("health") === worst.data("health") && n.degree(false) > worst.degree(false));
      if (better) worst = n;
    });
    return worst;
  }

  // The edges the layout ranks by. Past a few hundred, dagre's crossing reduction costs
  // seconds: each service's two busiest calls out and in are enough to place it, and every
  // edge is still drawn.
  const LAYOUT_EDGES = 400;

  function layoutEdges() {
    const edges = cy.edges();
    if (edges.length <= LAYOUT_EDGES) return edges;
    const rate = (e) => {
      const value = e.data("api").rate_rps;
      return typeof value === "number" ? value : 0;
    };
    let kept = cy.collection();
    cy.nodes().forEach((node) => {
      for (const side of [node.outgoers("edge"), node.incomers("edge")]) {
        kept = kept.union(side.sort((a, b) => rate(b) - rate(a)).slice(0, 2));
      }
    });
    return kept;
  }

  // Callers on the left, what they call on the right; top to bottom on a phone, or when a
  // small graph reads larger that way (a long chain in a wide window stays left to right).
  function runLayout() {
    if (!cy.nodes().length) return;
    const few = cy.nodes().length <= 120;
    const directions = narrow() ? (few ? ["TB", "LR"] : ["TB"]) : few ? ["LR", "TB"] : ["LR"];
    let best = null;
    const laidOut = cy.nodes().union(layoutEdges());
    for (const direction of directions) {
      placeLabels(direction);
      laidOut.layout(layoutOptions(direction)).run();
      const zoom = cy.zoom();
      if (!best || zoom > best.zoom * 1.2) {
        const positions = {};
        cy.nodes().forEach((n) => { positions[n.id()] = Object.assign({}, n.position()); });
        best = { direction, zoom, positions };
      }
    }
    if (best.direction !== directions[directions.length - 1]) {
      placeLabels(best.direction);
      cy.nodes().positions((n) => best.positions[n.id()]);
      cy.fit(undefined, Math.round(remPx() * 1.5));
    }
    figure.dataset.mapDirection = best.direction;
    // A graph of three services should not be drawn at triple size.
    if (cy.zoom() > 1.4) {
      cy.zoom(1.4);
      cy.center();
    }
    // On a phone a fitted fleet is specks: start readable, around the focus or the worst
    // service, and let Fit (or a pinch) show the whole.
    if (narrow() && cy.zoom() < READABLE_ZOOM) {
      const around = cy.nodes(".focus").nonempty() ? cy.nodes(".focus") : worstNode();
      startReadable(around);
    }
    hush();
  }

  // Zoom levels a phone may start at, most readable first; below the last it shows the fit.
  const PHONE_ZOOMS = [READABLE_ZOOM, 0.6, 0.5];
  // Past this many nodes the search for a clean window costs too much: centre on the anchor.
  const CLEAN_WINDOW_MAX_NODES = 120;

  // Start zoomed in around the anchor with no node cut by the canvas edge: every node is
  // wholly in view or wholly out (a half-drawn node reads as a different, broken one). The
  // window's edges are put into the gaps between nodes, as near the anchor's centre as that
  // allows; when no window at a readable zoom has clean edges, the whole graph stays fitted.
  function startReadable(anchor) {
    const fitted = { zoom: cy.zoom(), pan: Object.assign({}, cy.pan()) };
    if (cy.nodes().length > CLEAN_WINDOW_MAX_NODES) {
      cy.zoom({ level: READABLE_ZOOM, position: anchor.position() });
      cy.center(anchor.closedNeighborhood());
      return;
    }
    const boxes = cy.nodes().map((n) => n.boundingBox({ includeLabels: true }));
    const target = anchor.boundingBox({ includeLabels: true });
    for (const zoom of PHONE_ZOOMS.filter((z) => z > fitted.zoom)) {
      const pad = remPx() * 0.5 / zoom;
      const width = cy.width() / zoom;
      const height = cy.height() / zoom;
      const lefts = windowStarts(boxes, target, "x1", "x2", width, pad);
      const tops = windowStarts(boxes, target, "y1", "y2", height, pad);
      const cxMid = (target.x1 + target.x2) / 2;
      const cyMid = (target.y1 + target.y2) / 2;
      let best = null;
      for (const left of lefts) {
        for (const top of tops) {
          if (!cleanWindow(boxes, left, top, width, height)) continue;
          const off = Math.hypot(left + width / 2 - cxMid, top + height / 2 - cyMid);
          if (!best || off < best.off) best = { left, top, off };
        }
      }
      if (best) {
        cy.viewport({ zoom, pan: { x: -best.left * zoom, y: -best.top * zoom } });
        return;
      }
    }
    cy.viewport(fitted);
  }

  // Where a window of this size may start along one axis: centred on the target, or with one
  // of its edges just past a node's edge, keeping the whole target inside.
  function windowStarts(boxes, target, lo, hi, size, pad) {
    const starts = [(target[lo] + target[hi]) / 2 - size / 2];
    for (const box of boxes) starts.push(box[lo] - pad, box[hi] + pad - size);
    const fits = target[hi] - target[lo] + 2 * pad <= size;
    return starts.filter((s) => !fits || (s <= target[lo] - pad / 2 && s + size >= target[hi] + pad / 2));
  }

  function cleanWindow(boxes, left, top, width, height) {
    const right = left + width;
    const bottom = top + height;
    const slack = 0.5;
    for (const b of boxes) {
      const touches = b.x2 > left && b.x1 < right && b.y2 > top && b.y1 < bottom;
      if (!touches) continue;
      const inside = b.x1 >= left - slack && b.x2 <= right + slack &&
        b.y1 >= top - slack && b.y2 <= bottom + slack;
      if (!inside) return false;
    }
    return true;
  }

  function restyle() {
    if (!cy) return;
    const sizes = sizesNow();
    cy.nodes().forEach((node) => {
      const label = node.data("label");
      const lines = label.split("\n").length;
      node.data("w", Math.ceil(textWidth(label, sizes.node) + sizes.node * 2.2));
      node.data("h", Math.ceil(sizes.node * (1.35 * lines + 1.3)));
    });
    cy.style(styleOf(palette(), sizes));
    runLayout();
  }

  // ---------------------------------------------------------------- loading

  // Ask the API for the map of `state`; `inPlace` (the periodic refresh) keeps what is drawn
  // while it asks, and a failure then leaves the last map up with the reason in the status.
  function load(state, inPlace) {
    if (inPlace && loading) return;
    if (loading) loading.abort();
    loading = new AbortController();
    const signal = loading.signal;
    if (!inPlace) {
      figure.setAttribute("aria-busy", "true");
      figure.removeAttribute("data-map-ready");
      figure.removeAttribute("data-map-error");
      setStatus("Loading…");
    }
    const query = queryOf(state);
    const url = figure.dataset.apiUrl + (query ? "?" + query : "");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", signal })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          throw new Error("Signed out: sign in again to see the map.");
        }
        return response.json().catch(() => null).then(function (body) {
          if (!response.ok) {
            const message = body && body.error && body.error.message;
            throw new Error(message || "The map could not be read (HTTP " + response.status + ").");
          }
          if (!body || !Array.isArray(body.nodes) || !Array.isArray(body.edges)) {
            throw new Error("The map API answered something that is not a map.");
          }
          return body;
        });
      })
      .then(function (data) {
        if (signal.aborted) return;
        loading = null;
        if (inPlace) refresh(data, state);
        else draw(data, state);
      })
      .catch(function (error) {
        if (signal.aborted || error.name === "AbortError") return;
        loading = null;
        if (inPlace) {
          setStatus("Not refreshed: " + error.message, "error");
          return;
        }
        figure.removeAttribute("aria-busy");
        figure.setAttribute("data-map-error", "true");
        if (cy) cy.elements().remove();
        clearNotes();
        setStatus(error.message, "error");
        clearSelection();
      });
  }

  // ---------------------------------------------------------------- status, notes, panel

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind || "info";
  }

  function plural(n, word) {
    return n.toLocaleString("en") + " " + word + (n === 1 ? "" : "s");
  }

  function count(n, word) {
    return n ? plural(n, word) : "none on the map";
  }

  function showStatus(data, state) {
    const nodes = cy.nodes();
    const groups = nodes.filter('[kind = "group"]').length;
    const parts = [plural(nodes.length - groups, "service")];
    if (groups) parts.push(plural(groups, "group"));
    parts.push(plural(cy.edges().length, "edge"));
    if (state.service) {
      const hops = state.hops || DEFAULT_HOPS;
      parts.push("within " + plural(Number(hops), "hop") + " of " + state.service);
    }
    if (state.unhealthy) parts.push("unhealthy and their neighbours");
    if (hushing()) parts.push("zoom in or hover for the figures");
    if (narrow() && cy.zoom() <= READABLE_ZOOM + 0.001 && !cy.nodes().every((n) => inView(n))) {
      parts.push("Fit shows it all");
    }
    if (!nodes.length) {
      setStatus(state.unhealthy ? "Every service is healthy: nothing to show."
        : state.service ? "No service called " + state.service + " in the window."
          : "No services yet: nothing has reported in the window.", "empty");
      return;
    }
    setStatus(parts.join(" · "));
  }

  function inView(node) {
    const box = node.renderedBoundingBox();
    return box.x1 >= 0 && box.y1 >= 0 && box.x2 <= cy.width() && box.y2 <= cy.height();
  }

  function clearNotes() {
    notes.replaceChildren();
    notes.hidden = true;
  }

  function note(text, kind) {
    const p = document.createElement("p");
    p.className = "map-note map-note--" + (kind || "info");
    p.textContent = text;
    notes.appendChild(p);
  }

  // What the API says it left out or grouped, and the diff's summary: never a silent cap.
  function showNotes(data, state) {
    clearNotes();
    const groups = Array.isArray(data.groups) ? data.groups : [];
    if (data.truncated || groups.length) {
      const members = groups.reduce((sum, g) => sum + (typeof g.members === "number" ? g.members : 0), 0);
      const totals = data.totals || {};
      let text = "Too many services to draw one by one";
      if (typeof totals.nodes === "number") text += " (" + plural(totals.nodes, "service") + ")";
      text += ": " + plural(groups.length, "group") + " stand for " + plural(members, "service");
      text += data.group_by ? ", grouped by " + groupByWords(String(data.group_by)) + "." : ".";
      text += " Unhealthy services stay on their own. Search for a service, or click a group for its members.";
      note(text, "grouped");
    }
    for (const text of Array.isArray(data.notes) ? data.notes : []) note(String(text), "warning");
    if (state.compare) {
      const summary = data.diff && typeof data.diff === "object" ? data.diff : {};
      const part = (counts, what) => ["appeared", "vanished", "changed"]
        .map((key) => (counts && typeof counts[key] === "number" ? counts[key] : 0) + " " + key)
        .join(", ") + " " + what;
      note("Compared with " + describeCompare(state.compare) + (state.service ? ", across the fleet" : "") +
        ": " + part(summary.edges, "edges") + "; " + part(summary.nodes, "services") + ".", "diff");
    }
    notes.hidden = !notes.children.length;
  }

  function groupByWords(by) {
    if (by === "prefix") return "name prefix";
    if (by.startsWith("tag:")) return "tag " + by.slice(4) + "…";
    if (by.startsWith("meta:")) return "meta " + by.slice(5);
    return by;
  }

  function describeCompare(value) {
    const option = form.querySelector('select[name="compare"] option[value="' + CSS.escape(value) + '"]');
    return option ? option.textContent.trim().toLowerCase() : value;
  }

  function dt(list, term, value) {
    const t = document.createElement("dt");
    t.textContent = term;
    const d = document.createElement("dd");
    if (value instanceof Node) d.appendChild(value);
    else d.textContent = value;
    list.append(t, d);
  }

  function link(text, href, primary) {
    const a = document.createElement("a");
    a.className = "btn btn--small" + (primary ? " btn--primary" : "");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function button(text, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn btn--small";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function servicePath(name) {
    return figure.dataset.servicesUrl + "/" + name.split("/").map(encodeURIComponent).join("/");
  }

  function tracesPath(name) {
    return figure.dataset.tracesUrl + "?" + new URLSearchParams({ service: name }).toString();
  }

  function badge(health) {
    const span = document.createElement("span");
    span.className = "badge badge--" + health;
    span.dataset.health = health;
    const icon = document.createElement("span");
    icon.className = "icon icon--" + health;
    icon.setAttribute("aria-hidden", "true");
    span.append(icon, HEALTH[health].word);
    return span;
  }

  function panelTitle(text) {
    const h = document.createElement("h2");
    h.className = "card__title map-panel__title";
    h.textContent = text;
    return h;
  }

  function openPanel(children) {
    panel.replaceChildren(...children);
    panel.hidden = false;
  }

  function onNodeTap(node) {
    if (node.data("kind") === "group") {
      showNode(node);
      return;
    }
    const state = stateFromUrl();
    if (state.service === node.id()) {
      showNode(node);
      return;
    }
    apply(Object.assign({}, state, { service: node.id() }), "push");
  }

  function showNode(node) {
    const api = node.data("api");
    const name = nodeName(api);
    const list = document.createElement("dl");
    list.className = "kv map-panel__facts";
    dt(list, "Health", badge(node.data("health")));
    dt(list, "Called by", count(node.incomers("node").length, "caller"));
    dt(list, "Calls", count(node.outgoers("node").length, "service"));
    const red = api.red && typeof api.red === "object" ? api.red : null;
    if (red) {
      const figures = edgeFigures(red);
      if (figures.length) {
        dt(list, "Traffic", figures.join(" · ") + (red.source ? " (from " + String(red.source) + ")" : ""));
      }
    }
    const diff = diffOf(api);
    if (diff && diff.status !== "same") dt(list, "Compared", diffText(diff));
    cy.elements().unselect();
    node.select();
    if (isGroup(api)) {
      showGroup(node, api, name, list);
      return;
    }
    const actions = document.createElement("div");
    actions.className = "btn-group map-panel__actions";
    actions.append(link("Service page", servicePath(api.id), true), link("Traces", tracesPath(api.id)));
    const state = stateFromUrl();
    if (state.service !== node.id()) {
      actions.append(button("Focus", () => apply(Object.assign({}, state, { service: node.id() }), "push")));
    }
    openPanel([panelTitle(name), list, actions]);
  }

  // A group: its size and health, and its first members, each a link that focuses on it.
  function showGroup(node, api, name, list) {
    const group = groupOf(api);
    const count = memberCount(api);
    if (count !== null) dt(list, "Members", plural(count, "service"));
    const states = group.health_counts && typeof group.health_counts === "object" ? group.health_counts : {};
    const health = Object.keys(HEALTH).filter((h) => states[h]).map((h) => states[h] + " " + HEALTH[h].word);
    if (health.length) dt(list, "Their health", health.join(", "));
    if (typeof group.internal_edges === "number") dt(list, "Calls inside", String(group.internal_edges));
    const children = [panelTitle(name), list];
    const sample = Array.isArray(group.sample) ? group.sample.map(String) : [];
    if (sample.length) {
      const ul = document.createElement("ul");
      ul.className = "map-panel__members";
      for (const member of sample) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        const target = Object.assign({}, stateFromUrl(), { service: member });
        a.href = pageUrl(target);
        a.textContent = member;
        a.title = "Focus the map on " + member;
        a.addEventListener("click", (event) => {
          event.preventDefault();
          apply(target, "push");
        });
        li.appendChild(a);
        ul.appendChild(li);
      }
      if (count !== null && count > sample.length) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "… and " + (count - sample.length).toLocaleString("en") + " more";
        ul.appendChild(li);
      }
      children.push(ul);
    }
    if (group.by === "prefix" && group.key) {
      const actions = document.createElement("div");
      actions.className = "btn-group map-panel__actions";
      const query = new URLSearchParams({ q: String(group.key) }).toString();
      actions.append(link("List them on Services", figure.dataset.servicesUrl + "?" + query));
      children.push(actions);
    }
    openPanel(children);
  }

  function showEdge(edge) {
    const api = edge.data("api");
    const list = document.createElement("dl");
    list.className = "kv map-panel__facts";
    dt(list, "Rate", formatRate(api.rate_rps) || "no figure");
    dt(list, "Errors", api.error_ratio === null || api.error_ratio === undefined ? "no figure"
      : formatRatio(api.error_ratio));
    dt(list, "p95", formatMs(api.p95_ms) || "no figure");
    const evidence = Array.isArray(api.evidence) ? api.evidence : [];
    const ul = document.createElement("ul");
    ul.className = "map-panel__evidence";
    for (const kind of evidence) {
      const li = document.createElement("li");
      li.textContent = EVIDENCE_WORDS[kind] || String(kind);
      ul.appendChild(li);
    }
    dt(list, "Evidence", evidence.length ? ul : "none");
    if (api.drift) dt(list, "Drift", DRIFT_WORDS[api.drift] || String(api.drift));
    if (typeof api.members === "number") dt(list, "Stands for", plural(api.members, "call") + " between these groups");
    const diff = diffOf(api);
    if (diff && diff.status !== "same") dt(list, "Compared", diffText(diff));
    const title = edgeTitle(edge);
    const actions = document.createElement("div");
    actions.className = "btn-group map-panel__actions";
    if (!isGroup(edge.source().data("api"))) {
      actions.append(link("Traces from " + nodeName(edge.source().data("api")), tracesPath(String(api.source))));
    }
    openPanel([panelTitle(title), list, actions]);
    cy.elements().unselect();
    edge.select();
  }

  function edgeTitle(edge) {
    return nodeName(edge.source().data("api")) + " → " + nodeName(edge.target().data("api"));
  }

  const CHANGE_WORDS = { rate: "rate", error_ratio: "errors", p95: "p95" };

  function diffText(diff) {
    let text = DIFF_WORDS[diff.status] || String(diff.status);
    const changes = Array.isArray(diff.changes) ? diff.changes.map((c) => CHANGE_WORDS[c] || String(c)) : [];
    if (changes.length) text += ": " + changes.join(", ");
    const before = diff.before;
    if (before && typeof before === "object" && diff.status !== "appeared") {
      const was = edgeFigures(before);
      if (was.length) text += " (was " + was.join(" · ") + ")";
    }
    return text;
  }

  function clearSelection() {
    if (cy) cy.elements().unselect();
    panel.replaceChildren(...emptyPanel);
  }

  // ---------------------------------------------------------------- tooltip

  function hover(element, event) {
    const lines = [];
    if (element.isNode()) {
      const api = element.data("api");
      lines.push([nodeName(api), "title"]);
      lines.push([HEALTH[element.data("health")].word, "health"]);
      if (element.data("kind") === "group") {
        const count = memberCount(api);
        if (count !== null) lines.push([plural(count, "service") + " in this group · click for them"]);
      } else {
        const red = api.red && typeof api.red === "object" ? edgeFigures(api.red) : [];
        if (red.length) lines.push([red.join(" · ")]);
        lines.push([stateFromUrl().service === element.id() ? "the focused service" : "click to focus on it"]);
      }
      cy.elements().not(element.closedNeighborhood()).addClass("faded");
    } else {
      const api = element.data("api");
      lines.push([edgeTitle(element), "title"]);
      const figures = edgeFigures(api);
      lines.push([figures.length ? figures.join(" · ") : "no traffic in the window"]);
      const evidence = Array.isArray(api.evidence) ? api.evidence.map(String) : [];
      if (evidence.length) lines.push(["evidence: " + evidence.join(", ")]);
      if (api.drift) lines.push([DRIFT_WORDS[api.drift] || String(api.drift)]);
      const diff = diffOf(api);
      if (diff && diff.status !== "same") lines.push([diffText(diff)]);
      if (typeof api.members === "number") lines.push([plural(api.members, "call") + " between these groups"]);
    }
    tooltip.replaceChildren();
    for (const [text, kind] of lines) {
      const div = document.createElement("div");
      div.className = "map__tooltip-line" + (kind ? " map__tooltip-" + kind : "");
      div.textContent = text;
      tooltip.appendChild(div);
    }
    tooltip.hidden = false;
    placeTooltip(event);
  }

  function unhover() {
    tooltip.hidden = true;
    if (cy) cy.elements().removeClass("faded");
    highlightSearch();
  }

  function placeTooltip(event) {
    if (tooltip.hidden || !event.renderedPosition) return;
    const box = figure.querySelector(".map__canvas");
    const x = event.renderedPosition.x;
    const y = event.renderedPosition.y;
    const width = tooltip.offsetWidth;
    const height = tooltip.offsetHeight;
    let left = x + 14;
    if (left + width > box.clientWidth) left = Math.max(0, x - 14 - width);
    let top = y + 14;
    if (top + height > box.clientHeight) top = Math.max(0, y - 14 - height);
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }

  // ---------------------------------------------------------------- search

  function highlightSearch() {
    if (!cy) return;
    const input = form.elements.namedItem("service");
    const needle = (input.value || "").trim().toLowerCase();
    cy.nodes().removeClass("match");
    if (!needle || needle === (stateFromUrl().service || "").toLowerCase()) return;
    const matches = cy.nodes().filter((node) => node.id().toLowerCase().includes(needle) ||
      nodeName(node.data("api")).toLowerCase().includes(needle));
    matches.addClass("match");
    figure.dataset.mapMatches = String(matches.length);
  }

  // The search box offers the services on the map and the first members of its groups.
  function offerNames(data) {
    const list = document.getElementById("map-services");
    if (!list) return;
    const names = new Set();
    for (const node of data.nodes || []) {
      if (!isGroup(node)) names.add(String(node.id));
      else for (const member of groupOf(node).sample || []) names.add(String(member));
    }
    list.replaceChildren(...Array.from(names).sort().map((name) => {
      const option = document.createElement("option");
      option.value = name;
      return option;
    }));
  }

  function onSearchSubmit() {
    const input = form.elements.namedItem("service");
    const needle = (input.value || "").trim();
    if (cy && needle) {
      // A partial name that matches exactly one drawn service focuses that service.
      const lower = needle.toLowerCase();
      const matches = cy.nodes('[kind = "service"]').filter((n) => n.id().toLowerCase().includes(lower));
      const exact = matches.filter((n) => n.id().toLowerCase() === lower);
      if (!exact.length && matches.length === 1) input.value = matches[0].id();
      else if (exact.length) input.value = exact[0].id();
    }
    apply(stateFromForm(), "push");
  }

  // ---------------------------------------------------------------- keyboard

  // The canvas takes the focus: arrows select the nearest node that way (its figures open in
  // the panel), Enter does what a click does (focus the map on it, or, on the focus itself,
  // move to the panel's links), Escape clears, + and − zoom, 0 fits.
  const ARROWS = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };

  function bindKeyboard(canvas) {
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "application");
    canvas.setAttribute("aria-roledescription", "dependency graph");
    canvas.setAttribute("aria-label", "Dependency graph. Arrow keys select the nearest service " +
      "in that direction, Enter focuses the map on it, Escape clears. The same nodes and " +
      "edges are in the table below the map.");
    canvas.setAttribute("aria-describedby", "map-panel");
    canvas.addEventListener("keydown", function (event) {
      if (!cy || event.altKey || event.ctrlKey || event.metaKey) return;
      const selected = cy.nodes(":selected");
      if (ARROWS[event.key]) {
        const from = selected.nonempty() ? selected[0] : null;
        const next = from ? nearestNode(from, ARROWS[event.key]) : startNode();
        if (next) selectByKeyboard(next);
      } else if (event.key === "Enter" || event.key === " ") {
        if (selected.empty()) {
          const start = startNode();
          if (start) selectByKeyboard(start);
        } else if (stateFromUrl().service === selected[0].id() || isGroup(selected[0].data("api"))) {
          const first = panel.querySelector("a, button");
          if (first) first.focus();
        } else {
          onNodeTap(selected[0]);
        }
      } else if (event.key === "Escape") {
        clearSelection();
      } else if (event.key === "+" || event.key === "=") {
        zoomBy(1.25);
      } else if (event.key === "-") {
        zoomBy(0.8);
      } else if (event.key === "0") {
        cy.fit(undefined, Math.round(remPx() * 1.5));
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  function startNode() {
    if (!cy.nodes().length) return null;
    const focus = cy.nodes(".focus");
    return focus.nonempty() ? focus[0] : worstNode();
  }

  // The node nearest in the arrow's direction: ahead of this one, the least off to the side.
  function nearestNode(from, direction) {
    const [dx, dy] = direction;
    const here = from.position();
    let best = null;
    cy.nodes().forEach(function (node) {
      if (node === from) return;
      const there = node.position();
      const ahead = (there.x - here.x) * dx + (there.y - here.y) * dy;
      if (ahead <= 1) return;
      const aside = Math.abs((there.x - here.x) * dy) + Math.abs((there.y - here.y) * dx);
      const score = ahead + 2 * aside;
      if (!best || score < best.score) best = { node, score };
    });
    return best ? best.node : null;
  }

  function selectByKeyboard(node) {
    showNode(node);
    if (!inView(node)) cy.center(node);
  }

  function zoomBy(factor) {
    cy.zoom({ level: cy.zoom() * factor, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  }

  // ---------------------------------------------------------------- set-up

  function init() {
    figure = document.querySelector("figure[data-map]");
    form = document.getElementById("map-filters");
    if (!figure || !form || !window.cytoscape || !window.QuarterdeckMapStyle) return;  // the table stays
    tooltip = figure.querySelector(".map__tooltip");
    statusLine = figure.querySelector(".map__status");
    panel = document.getElementById("map-panel");
    emptyPanel = Array.from(panel.childNodes);
    notes = document.getElementById("map-notes");
    root.classList.add("map-js");
    bindKeyboard(figure.querySelector(".map__canvas"));
    const table = document.getElementById("map-table");
    if (table) table.open = false;
    document.addEventListener("htmx:after:swap", onSwap);
    // toggle does not bubble: listen in the capture phase (the table is replaced on refresh).
    document.addEventListener("toggle", function (event) {
      if (event.target.id !== "map-table") return;
      tableOpen = event.target.open;
      if (tableOpen) refreshTable(event.target);
    }, true);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      onSearchSubmit();
    });
    form.addEventListener("change", function (event) {
      if (event.target.name === "service") return;  // typing searches; Enter or a pick focuses
      apply(stateFromForm(), "push");
    });
    const input = form.elements.namedItem("service");
    input.addEventListener("input", function (event) {
      highlightSearch();
      // Picking from the list is a choice: focus it at once.
      if (event.inputType === "insertReplacementText" || event.inputType === undefined) {
        const options = Array.from(document.querySelectorAll("#map-services option"));
        if (options.some((o) => o.value === input.value)) apply(stateFromForm(), "push");
      }
    });
    document.querySelectorAll("[data-map-clear-focus]").forEach(function (control) {
      control.addEventListener("click", function (event) {
        event.preventDefault();
        const state = stateFromUrl();
        delete state.service;
        delete state.hops;
        apply(state, "push");
      });
    });
    figure.querySelectorAll("[data-map-zoom]").forEach(function (control) {
      control.hidden = false;
      control.addEventListener("click", function () {
        if (!cy) return;
        const how = control.dataset.mapZoom;
        if (how === "fit") cy.fit(undefined, Math.round(remPx() * 1.5));
        else {
          const factor = how === "in" ? 1.25 : 0.8;
          cy.zoom({ level: cy.zoom() * factor, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
        }
      });
    });
    window.addEventListener("popstate", function () {
      const state = stateFromUrl();
      fillForm(state);
      load(state);
    });
    // Theme or wall mode changed: colours and sizes come from CSS.
    new MutationObserver(restyle).observe(root, { attributes: true, attributeFilter: ["data-theme", "class"] });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", restyle);
    let width = 0;
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        const now = figure.querySelector(".map__canvas").clientWidth;
        if (!cy || !current || Math.abs(now - width) < 40) return;
        width = now;
        cy.resize();
        runLayout();
      }).observe(figure.querySelector(".map__canvas"));
    }

    const state = stateFromUrl();
    fillForm(state);
    window.history.replaceState(state, "", window.location.href);
    // The page came with the API's answer for its own URL (the table is drawn from it): the
    // first draw needs no second request. Every later change asks the API.
    const first = readEmbedded();
    if (first) draw(first, state);
    else load(state);
    // Health changes arrive over the live stream (the table part); the figures of the calls
    // move all the time, so a visible map asks again every half minute and updates in place.
    window.setInterval(function () {
      if (!document.hidden && current) load(stateFromUrl(), true);
    }, REFRESH_MS);
  }

  function readEmbedded() {
    const script = document.getElementById("map-data");
    if (!script) return null;
    try {
      const data = JSON.parse(script.textContent);
      return data && Array.isArray(data.nodes) && Array.isArray(data.edges) ? data : null;
    } catch (e) {
      return null;
    }
  }

  // For tests, benches and other scripts: what the map shows now.
  window.QuarterdeckMap = Object.freeze({
    cy: () => cy,
    describe: function () {
      if (!cy) return null;
      return {
        query: figure.dataset.mapQuery || "",
        nodes: cy.nodes().map((n) => ({
          id: n.id(), label: n.data("label"), health: n.data("health"), kind: n.data("kind"),
          diff: n.data("diff") || null, focus: n.hasClass("focus"),
        })),
        edges: cy.edges().map((e) => ({
          source: e.data("source"), target: e.data("target"), label: e.data("label"),
          drift: e.data("drift") || null, diff: e.data("diff") || null,
          line_style: e.style("line-style"),
        })),
        layout_ms: Math.round(drawnAt),
        // Since the page's navigation started: what a person waits for.
        drawn_at_ms: Number(figure.dataset.mapDrawnAtMs || 0),
      };
    },
    reload: () => load(stateFromUrl()),
    // The number of live refreshes drawn in place since the last full draw.
    refreshes: () => Number(figure.dataset.mapRefreshes || 0),
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
