/*
 * Quarterdeck page behaviours: live updates, theme and wall-mode toggles, relative times.
 * Plain JavaScript, loaded with `defer` after htmx. Every page works without it (docs/ui.md).
 *
 * Live-update contract:
 *   <body data-live-url="/events">   the Server-Sent Events stream (absent: no live updates)
 *   event "change", data {"topics": ["services", "service:orders", ...]}   ("*" matches all)
 *   <div data-live-topic="services service:orders" data-live-src="/services?part=table">
 *     A matching element is re-fetched from data-live-src with htmx (the request carries
 *     HX-Request, so the server answers with the fragment alone) and replaced by it (outerHTML).
 *     Refreshes are debounced per data-live-src URL. The fragment must carry the same
 *     data-live-topic / data-live-src attributes to stay live.
 *   event "end", data {"reason": "signed-out" | "forbidden" | "shutdown"}   the stream's last event
 *   #live-indicator   data-state = connecting | connected | reconnecting | paused | expired | forbidden
 */
(function () {
  "use strict";

  const THEME_KEY = "quarterdeck.theme";
  const WALL_KEY = "quarterdeck.wall";
  const REFRESH_DEBOUNCE_MS = 250;
  const TIME_TICK_MS = 15000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;

  const root = document.documentElement;

  function storageSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* storage blocked (private mode, policy): the choice lasts for this page only */
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Theme: the button flips between dark and light; choosing what the system already prefers
  // stores nothing, so the page follows the system again.
  // ---------------------------------------------------------------------------------------------

  const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  function effectiveTheme() {
    const chosen = root.getAttribute("data-theme");
    if (chosen === "dark" || chosen === "light") return chosen;
    return systemDark.matches ? "dark" : "light";
  }

  function setTheme(theme) {
    const system = systemDark.matches ? "dark" : "light";
    if (theme === system) {
      root.removeAttribute("data-theme");
      storageSet(THEME_KEY, null);
    } else {
      root.setAttribute("data-theme", theme);
      storageSet(THEME_KEY, theme);
    }
    renderThemeButtons();
  }

  function renderThemeButtons() {
    const shown = effectiveTheme();
    const next = shown === "dark" ? "light" : "dark";
    const following = !root.hasAttribute("data-theme");
    const text = "Theme: " + shown + (following ? " (system)" : "") + ". Switch to " + next + ".";
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.title = text;
      const label = button.querySelector("[data-theme-label]");
      if (label) label.textContent = text;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Wall-screen mode: html.wall scales the console up (see quarterdeck.css, section 1).
  // ---------------------------------------------------------------------------------------------

  function setWall(on) {
    root.classList.toggle("wall", on);
    storageSet(WALL_KEY, on ? "1" : "0");
    renderWallButtons();
  }

  function renderWallButtons() {
    const on = root.classList.contains("wall");
    for (const button of document.querySelectorAll("[data-wall-toggle]")) {
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.title = on ? "Wall-screen mode: on" : "Wall-screen mode: off";
    }
  }

  function initToggles() {
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.hidden = false;
      button.addEventListener("click", function () {
        setTheme(effectiveTheme() === "dark" ? "light" : "dark");
      });
    }
    for (const button of document.querySelectorAll("[data-wall-toggle]")) {
      button.hidden = false;
      button.addEventListener("click", function () {
        setWall(!root.classList.contains("wall"));
      });
    }
    systemDark.addEventListener("change", renderThemeButtons);
    // Keep every open tab on the same theme and mode.
    window.addEventListener("storage", function (event) {
      if (event.key === THEME_KEY) {
        if (event.newValue === "dark" || event.newValue === "light") {
          root.setAttribute("data-theme", event.newValue);
        } else {
          root.removeAttribute("data-theme");
        }
        renderThemeButtons();
      } else if (event.key === WALL_KEY) {
        root.classList.toggle("wall", event.newValue === "1");
        renderWallButtons();
      }
    });
    renderThemeButtons();
    renderWallButtons();
  }

  // ---------------------------------------------------------------------------------------------
  // Relative times: <time datetime="ISO"> shows "3 min ago", the title keeps the UTC time.
  // <time data-time="absolute"> is left as the server wrote it.
  // ---------------------------------------------------------------------------------------------

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function formatUtc(date) {
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate()) +
      " " + pad(date.getUTCHours()) + ":" + pad(date.getUTCMinutes()) + ":" +
      pad(date.getUTCSeconds()) + " UTC";
  }

  function formatRelative(date, now) {
    const seconds = Math.round((now - date) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    let text;
    if (s < 10) return future ? "in a moment" : "just now";
    if (s < 60) {
      text = s + " s";
    } else if (s < 3600) {
      text = Math.floor(s / 60) + " min";
    } else if (s < 6 * 3600) {
      const minutes = Math.floor((s % 3600) / 60);
      text = Math.floor(s / 3600) + " h" + (minutes ? " " + minutes + " min" : "");
    } else if (s < 86400) {
      text = Math.floor(s / 3600) + " h";
    } else if (s < 30 * 86400) {
      text = Math.floor(s / 86400) + " d";
    } else {
      return date.toISOString().slice(0, 10);
    }
    return future ? "in " + text : text + " ago";
  }

  function formatTimes(scope) {
    const now = Date.now();
    for (const el of (scope || document).querySelectorAll("time[datetime]")) {
      if (el.getAttribute("data-time") === "absolute") continue;
      const date = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      const text = formatRelative(date, now);
      if (el.textContent !== text) el.textContent = text;
      const title = formatUtc(date);
      if (el.title !== title) el.title = title;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Live updates over Server-Sent Events, read with fetch() rather than EventSource: only
  // fetch shows the status (429 and its Retry-After, 401, a redirect to sign-in), and it lets
  // us send Last-Event-ID on our own reconnects so that the server replays what was missed.
  // ---------------------------------------------------------------------------------------------

  const INDICATOR = {
    connecting: ["Connecting…", "Live updates: connecting"],
    connected: ["Live", "Live updates: connected"],
    reconnecting: ["Reconnecting…", "Live updates lost, retrying. What is on screen may be out of date."],
    paused: ["Live paused", "Live updates paused: too many live pages are open. Close some tabs; " +
      "this page still works and retries by itself."],
    expired: ["Signed out", "Your session has ended. Reload the page to sign in again."],
    forbidden: ["Live stopped", "Your role no longer allows live updates here. Reload the page."],
  };

  const live = {
    url: null,
    controller: null,      // AbortController of the open stream request
    lastEventId: "",
    attempt: 0,
    everConnected: false,
    reconnectTimer: null,
    expired: false,
    debounce: new Map(),   // data-live-src -> timeout id
    inflight: new Set(),   // data-live-src being fetched
    again: new Set(),      // data-live-src changed again while being fetched
    whenVisible: new Set(),  // data-live-src to refresh once the tab is visible
    refreshing: new Set(), // elements whose refresh live.js started (guards their swap)
  };

  function setIndicator(state, detail) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) return;
    if (live.expired && state !== "forbidden") state = "expired";
    const [label, title] = INDICATOR[state];
    indicator.hidden = false;
    indicator.setAttribute("data-state", state);
    indicator.title = detail ? title + " " + detail : title;
    const labelEl = indicator.querySelector(".live-indicator__label");
    if (labelEl) labelEl.textContent = label;
  }

  function connect() {
    clearTimeout(live.reconnectTimer);
    if (live.controller) live.controller.abort();
    const controller = new AbortController();
    live.controller = controller;
    if (!live.expired) setIndicator(live.attempt ? "reconnecting" : "connecting");
    const headers = { "Accept": "text/event-stream" };
    if (live.lastEventId) headers["Last-Event-ID"] = live.lastEventId;
    fetch(live.url, {
      headers: headers, credentials: "same-origin", cache: "no-store", redirect: "manual",
      signal: controller.signal,
    }).then(function (response) {
      // A redirect here is the sign-in page; 401 says the same to a token-less page.
      if (response.type === "opaqueredirect" || response.status === 401) {
        return { ended: "signed-out" };
      }
      if (response.status === 429 || response.status === 503) {
        return { pausedFor: retryAfterMs(response) };
      }
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
        throw new Error("HTTP " + response.status);
      }
      opened();
      return readEvents(response.body, controller);
    }).then(function (outcome) {
      if (live.controller !== controller) return;
      live.controller = null;
      if (outcome.pausedFor !== undefined) {
        scheduleReconnect(outcome.pausedFor, "paused");
      } else if (outcome.ended === "signed-out") {
        live.expired = true;
        scheduleReconnect(0, "expired");
      } else if (outcome.ended === "forbidden") {
        scheduleReconnect(0, "forbidden");
      } else {
        scheduleReconnect(0, "reconnecting");  // the server restarted, or a proxy cut us off
      }
    }).catch(function () {
      if (live.controller !== controller || controller.signal.aborted) return;
      live.controller = null;
      scheduleReconnect(0, "reconnecting");
    });
  }

  function opened() {
    const missedEvents = live.everConnected || live.attempt > 0;
    live.attempt = 0;
    live.everConnected = true;
    live.expired = false;  // the stream needs a session too: opening it means signed in again
    setIndicator("connected");
    // Without an event id to resume from, the server cannot replay: refresh everything.
    if (missedEvents && !live.lastEventId) refreshAll();
  }

  function retryAfterMs(response) {
    const value = (response.headers.get("Retry-After") || "").trim();
    if (/^\d+$/.test(value)) return Number(value) * 1000;
    const at = Date.parse(value);
    return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
  }

  // The stream's text, parsed as the EventSource specification says (fields, blank-line
  // dispatch, comments). Resolves with {ended: reason} when the server ends the stream.
  function readEvents(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { type: "message", data: [] };
    let ended = "";

    function line(text) {
      if (text === "") {
        if (event.data.length) dispatch(event.type, event.data.join("\n"));
        event = { type: "message", data: [] };
        return;
      }
      if (text.startsWith(":")) return;
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "id" && !value.includes("\0")) live.lastEventId = value;
    }

    function dispatch(type, data) {
      if (type === "change") {
        onChange(data);
      } else if (type === "end") {
        try {
          ended = JSON.parse(data).reason || "closed";
        } catch (e) {
          ended = "closed";
        }
      }
    }

    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done || controller.signal.aborted) return { ended: ended || "closed" };
        buffer += chunk.value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        lines.forEach(line);
        return pump();
      });
    }
    return pump();
  }

  // Exponential back-off with jitter, so that a room full of wall screens does not reconnect in
  // lockstep; never sooner than the server asked (Retry-After).
  function scheduleReconnect(atLeastMs, state) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, live.attempt));
    const backoff = ceiling / 2 + Math.random() * (ceiling / 2);
    const delay = Math.max(backoff, atLeastMs + Math.random() * atLeastMs * 0.25);
    live.attempt += 1;
    const seconds = Math.round(delay / 1000);
    setIndicator(state, seconds >= 1 ? "Next try in about " + seconds + " s." : "");
    clearTimeout(live.reconnectTimer);
    live.reconnectTimer = setTimeout(connect, delay);
  }

  function onChange(data) {
    let topics;
    try {
      topics = JSON.parse(data).topics;
    } catch (e) {
      return;
    }
    if (!Array.isArray(topics)) return;
    refreshTopics(topics);
  }

  function liveElements() {
    return Array.from(document.querySelectorAll("[data-live-topic][data-live-src]"));
  }

  function refreshTopics(topics) {
    const wanted = new Set(topics.map(String));
    const everything = wanted.has("*");
    const matched = liveElements().filter(function (el) {
      if (everything) return true;
      return el.getAttribute("data-live-topic").split(/\s+/).some((t) => wanted.has(t));
    });
    scheduleOutermost(matched);
  }

  function refreshAll() {
    scheduleOutermost(liveElements());
  }

  // A region inside another region that is refreshed anyway needs no request of its own.
  function scheduleOutermost(elements) {
    const set = new Set(elements);
    for (const el of elements) {
      let parent = el.parentElement && el.parentElement.closest("[data-live-src]");
      let nested = false;
      while (parent) {
        if (set.has(parent)) {
          nested = true;
          break;
        }
        parent = parent.parentElement && parent.parentElement.closest("[data-live-src]");
      }
      if (!nested) schedule(el.getAttribute("data-live-src"));
    }
  }

  function schedule(src) {
    clearTimeout(live.debounce.get(src));
    live.debounce.set(src, setTimeout(function () {
      live.debounce.delete(src);
      refresh(src);
    }, REFRESH_DEBOUNCE_MS));
  }

  function elementsFor(src) {
    return liveElements().filter((el) => el.getAttribute("data-live-src") === src);
  }

  function isEditing(el) {
    const active = document.activeElement;
    return Boolean(active && active !== document.body && el.contains(active) &&
      active.matches("input, select, textarea, [contenteditable]"));
  }

  function refresh(src) {
    if (document.hidden) {
      live.whenVisible.add(src);
      return;
    }
    if (live.inflight.has(src)) {
      live.again.add(src);
      return;
    }
    const targets = elementsFor(src);
    const ready = [];
    for (const el of targets) {
      if (isEditing(el)) {
        // Do not pull a form out from under someone typing: refresh when focus leaves it.
        el.addEventListener("focusout", () => schedule(src), { once: true });
      } else {
        ready.push(el);
      }
    }
    if (!ready.length) return;
    live.inflight.add(src);
    Promise.allSettled(ready.map(swapElement)).finally(function () {
      live.inflight.delete(src);
      if (live.again.delete(src)) schedule(src);
    });
  }

  function swapElement(el) {
    if (!el.isConnected) return Promise.resolve();
    const src = el.getAttribute("data-live-src");
    // An outerHTML swap closes <details>; reopen the ones (with an id) the reader had open.
    const openIds = Array.from(el.querySelectorAll("details[open][id]"), (d) => d.id);
    live.refreshing.add(el);
    return window.htmx.ajax("GET", src, { source: el, target: el, swap: "outerHTML" })
      .catch(() => markFailed(el, "request failed"))
      .finally(function () {
        live.refreshing.delete(el);
        if (el.isConnected) return;  // not replaced: failed, or the server sent 204
        for (const id of openIds) {
          const details = document.getElementById(id);
          if (details && details.tagName === "DETAILS") details.open = true;
        }
        for (const fresh of elementsFor(src)) {
          formatTimes(fresh);
          fresh.classList.add("live-updated");
          fresh.addEventListener("animationend", () => fresh.classList.remove("live-updated"),
            { once: true });
        }
      });
  }

  function markFailed(el, reason) {
    if (!el.isConnected) return;
    // The region keeps its last good content; CSS outlines it (see [data-live-failed]).
    el.setAttribute("data-live-failed", reason);
  }

  // htmx 4 swaps every response except 204/304, errors included. A live region must keep its
  // last good content instead of turning into an error page or the sign-in form.
  document.addEventListener("htmx:before:swap", function (event) {
    const ctx = event.detail && event.detail.ctx;
    if (!ctx || !live.refreshing.has(ctx.sourceElement)) return;
    const response = ctx.response || {};
    if (response.raw && response.raw.redirected) {
      event.preventDefault();
      live.expired = true;  // a redirect here is the sign-in page
      setIndicator("expired");
      markFailed(ctx.sourceElement, "signed out");
    } else if (!response.status || response.status >= 400) {
      event.preventDefault();
      markFailed(ctx.sourceElement, "HTTP " + response.status);
    }
  });

  document.addEventListener("htmx:error", function (event) {
    const ctx = event.detail && event.detail.ctx;
    if (ctx && live.refreshing.has(ctx.sourceElement)) markFailed(ctx.sourceElement, "network error");
  });

  // Content that htmx swapped for any other reason gets its times formatted too.
  document.addEventListener("htmx:after:swap", function () {
    formatTimes(document);
  });

  function initLive() {
    live.url = document.body.getAttribute("data-live-url");
    if (!live.url || !window.fetch || !window.TextDecoderStream || !window.htmx) return;
    connect();
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) return;
      const waiting = Array.from(live.whenVisible);
      live.whenVisible.clear();
      waiting.forEach(schedule);
    });
    window.addEventListener("online", function () {
      if (!live.controller) {
        live.attempt = Math.min(live.attempt, 1);
        connect();
      }
    });
    // Leaving the page closes the stream quietly; coming back from the back/forward cache reopens it.
    window.addEventListener("pagehide", function () {
      clearTimeout(live.reconnectTimer);
      if (live.controller) live.controller.abort();
      live.controller = null;
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        live.attempt = 1;  // counts as a reconnect: refresh what may have changed meanwhile
        connect();
      }
    });
  }

  // ---------------------------------------------------------------------------------------------

  // A group of the bar (details/summary) closes on Escape, on a click elsewhere, and when
  // another one opens, as a menu would.
  function initNavGroups() {
    const groups = [...document.querySelectorAll("[data-nav-group]")];
    if (!groups.length) return;
    for (const group of groups) {
      group.addEventListener("toggle", function () {
        if (group.open) for (const other of groups) if (other !== group) other.open = false;
      });
    }
    document.addEventListener("click", function (event) {
      for (const group of groups) if (group.open && !group.contains(event.target)) group.open = false;
    });
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      for (const group of groups) {
        if (!group.open) continue;
        group.open = false;
        if (group.contains(document.activeElement)) group.querySelector("summary").focus();
      }
    });
  }

  function init() {
    initToggles();
    initNavGroups();
    formatTimes(document);
    setInterval(() => formatTimes(document), TIME_TICK_MS);
    initLive();
  }

  // For pages and tests: refresh regions as if a "change" event had named these topics.
  window.Quarterdeck = Object.freeze({ refreshTopics: refreshTopics });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
