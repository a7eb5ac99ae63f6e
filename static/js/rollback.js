// The release card's rollback form: plan first (dry run), then run on a second confirmation.
// Posts JSON to POST /api/v1/actions; the answer is shown as text only (fleet text is untrusted).
(function () {
  "use strict";

  function post(form, dryRun) {
    var body = {
      action: "rollback",
      target: { service: form.getAttribute("data-service") },
      reason: form.elements.reason.value,
      dry_run: dryRun,
    };
    return fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.getAttribute("data-csrf") },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; },
        function () { return { ok: false, answer: { error: { message: "HTTP " + response.status } } }; });
    });
  }

  function show(form, text) {
    form.querySelector("[data-rollback-result]").textContent = text;
  }

  function describe(result) {
    if (!result.ok) return "Refused: " + ((result.answer.error || {}).message || "unknown error");
    var steps = (result.answer.plan || []).map(function (s) { return s.source + ": " + s.change; });
    return result.answer.status + (steps.length ? " — " + steps.join("; ") : "");
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-rollback")) return;
    event.preventDefault();
    var confirmed = form.getAttribute("data-planned") === "1";
    show(form, confirmed ? "Rolling back…" : "Planning…");
    post(form, !confirmed).then(function (result) {
      show(form, describe(result));
      var button = form.querySelector("[data-rollback-submit]");
      if (!confirmed && result.ok) {
        form.setAttribute("data-planned", "1");
        button.textContent = "Confirm: roll back now";
      } else {
        form.removeAttribute("data-planned");
        button.textContent = button.getAttribute("data-label");
      }
    }, function () { show(form, "The request did not reach Quarterdeck."); });
  });
})();
