/*
 * The command palette: "/" (when not typing in a field) or Ctrl/Cmd-K opens a dialog that
 * searches services, instances, recent traces and actions through GET /api/v1/palette.
 * Keyboard: arrows (and Home/End) move, Enter opens, Esc closes. ARIA combobox + listbox with
 * aria-activedescendant; every text from the fleet goes in with textContent, never innerHTML.
 */
(function () {
  "use strict";

  const DEBOUNCE_MS = 120;
  const dialog = document.getElementById("palette");
  if (!dialog || typeof dialog.showModal !== "function") return;
  const input = document.getElementById("palette-input");
  const list = document.getElementById("palette-list");
  const status = document.getElementById("palette-status");
  const apiUrl = dialog.getAttribute("data-palette-url");

  let items = [];
  let active = -1;
  let sequence = 0;
  let timer = null;
  let controller = null;
  let returnFocus = null;
  let lastQuery = null;

  function isTyping(target) {
    if (!(target instanceof Element)) return false;
    if (target.isContentEditable) return true;
    const tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return false;
    const type = (target.getAttribute("type") || "text").toLowerCase();
    return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"].includes(type);
  }

  function open() {
    if (dialog.open) {
      input.select();
      return;
    }
    returnFocus = document.activeElement;
    input.value = "";
    dialog.showModal();
    input.focus();
    search("");
  }

  function close() {
    if (dialog.open) dialog.close();
  }

  dialog.addEventListener("close", function () {
    if (controller) controller.abort();
    clearTimeout(timer);
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
    returnFocus = null;
  });

  // A click on the backdrop (outside the dialog's box) closes it.
  dialog.addEventListener("click", function (event) {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right &&
      event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) close();
  });

  document.addEventListener("keydown", function (event) {
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (key === "k" || key === "K")) {
      event.preventDefault();
      open();
      return;
    }
    if (key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey &&
        !dialog.open && !isTyping(event.target)) {
      event.preventDefault();
      open();
    }
  });

  for (const button of document.querySelectorAll("[data-palette-open]")) {
    button.hidden = false;
    button.addEventListener("click", open);
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { search(input.value); }, DEBOUNCE_MS);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown") move(active + 1);
    else if (event.key === "ArrowUp") move(active - 1);
    else if (event.key === "Home" && items.length && event.ctrlKey) move(0);
    else if (event.key === "End" && items.length && event.ctrlKey) move(items.length - 1);
    else if (event.key === "PageDown") move(active + 5);
    else if (event.key === "PageUp") move(active - 5);
    else if (event.key === "Enter") {
      event.preventDefault();
      if (timer !== null && input.value !== lastQuery) {
        // Enter typed before the debounce ran: search now, then go to the best match.
        clearTimeout(timer);
        search(input.value).then(function () { go(0); });
        return;
      }
      go(active >= 0 ? active : 0);
      return;
    } else return;
    event.preventDefault();
  });

  function search(text) {
    timer = null;
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = ++sequence;
    lastQuery = text;
    const url = apiUrl + "?q=" + encodeURIComponent(text);
    dialog.setAttribute("aria-busy", "true");
    return fetch(url, {
      headers: {Accept: "application/json"},
      credentials: "same-origin",
      signal: controller.signal,
      redirect: "manual",
    }).then(function (response) {
      if (response.status === 401 || response.type === "opaqueredirect") {
        throw new Error("Signed out: reload the page to sign in again.");
      }
      return response.json().then(function (body) {
        if (!response.ok) {
          const message = body && body.error ? body.error.message : "HTTP " + response.status;
          throw new Error("Search failed: " + message);
        }
        return body;
      });
    }).then(function (body) {
      if (mine !== sequence) return;
      render(body.results || [], text);
    }).catch(function (error) {
      if (error.name === "AbortError" || mine !== sequence) return;
      render([], text);
      status.textContent = error.message;
    }).finally(function () {
      if (mine === sequence) dialog.removeAttribute("aria-busy");
    });
  }

  function render(results, text) {
    dialog.setAttribute("data-palette-shown", text);  // what the list shows now (tests wait on it)
    items = results.filter(function (item) { return isLocal(item.url); });
    const options = items.map(function (item, index) { return option(item, index); });
    list.replaceChildren.apply(list, options);
    input.setAttribute("aria-expanded", items.length ? "true" : "false");
    if (!items.length) {
      status.textContent = text.trim() ? "Nothing matches “" + text.trim() + "”." : "Nothing to show yet.";
      active = -1;
      input.removeAttribute("aria-activedescendant");
      return;
    }
    status.textContent = items.length + (items.length === 1 ? " match" : " matches");
    move(0);
  }

  function option(item, index) {
    const li = document.createElement("li");
    li.id = "palette-option-" + index;
    li.className = "palette__option palette__option--" + item.kind;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.dataset.kind = item.kind;
    const kind = document.createElement("span");
    kind.className = "palette__kind";
    kind.textContent = item.kind;
    const main = document.createElement("span");
    main.className = "palette__main";
    const label = document.createElement("span");
    label.className = "palette__label";
    label.textContent = item.label;
    const detail = document.createElement("span");
    detail.className = "palette__detail";
    detail.textContent = item.detail;
    main.append(label, detail);
    li.append(kind, main);
    if (item.health) {
      // Shape and word beside the colour: never colour alone.
      const badge = document.createElement("span");
      badge.className = "badge badge--" + item.health + " palette__health";
      const icon = document.createElement("span");
      icon.className = "icon icon--" + item.health;
      icon.setAttribute("aria-hidden", "true");
      const word = document.createElement("span");
      word.textContent = item.health;
      badge.append(icon, word);
      li.append(badge);
    }
    li.addEventListener("mousemove", function () { if (active !== index) move(index); });
    li.addEventListener("click", function () { go(index); });
    return li;
  }

  function move(index) {
    if (!items.length) return;
    const next = Math.max(0, Math.min(items.length - 1, index));
    const previous = document.getElementById("palette-option-" + active);
    if (previous) previous.setAttribute("aria-selected", "false");
    active = next;
    const current = document.getElementById("palette-option-" + active);
    current.setAttribute("aria-selected", "true");
    input.setAttribute("aria-activedescendant", current.id);
    current.scrollIntoView({block: "nearest"});
  }

  function go(index) {
    const item = items[index];
    if (!item) return;
    returnFocus = null;
    dialog.close();
    window.location.assign(item.url);
  }

  // The API answers paths on this site; anything else is not followed.
  function isLocal(url) {
    return typeof url === "string" && url.startsWith("/") && !url.startsWith("//");
  }

  window.QuarterdeckPalette = {open: open, close: close};
})();
