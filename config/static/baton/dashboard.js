/* Baton dashboard: times in the browser's zone, live run pages over SSE, copy buttons. No inline code:
   the pages' Content-Security-Policy allows scripts from this origin only. */
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.localized) return;
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment)) return;
      el.textContent = format.format(moment);
      el.dataset.localized = "1";
    });
  }

  // A run page: each event of /api/v1/runs/{id}/stream reloads the live region from the server (one
  // partial request, debounced), so the page shows what the server renders; the stream's ids let
  // EventSource resume without losing or repeating events.
  function followRun(region) {
    var source = new EventSource(region.dataset.stream + "?last_event_id=" + (region.dataset.seq || "0"));
    var pending = null;
    function refresh() {
      pending = null;
      htmx.ajax("GET", region.dataset.partial, { target: region, swap: "innerHTML" });
    }
    source.onmessage = null;
    ["run_queued", "run_started", "step_started", "step_completed", "step_failed", "step_retrying",
     "step_skipped", "run_paused", "run_awaiting_approval", "run_awaiting_input", "run_completed",
     "run_failed", "run_cancelled"].forEach(function (type) {
      source.addEventListener(type, function () {
        if (!pending) pending = setTimeout(refresh, 150);
        if (type === "run_completed" || type === "run_failed" || type === "run_cancelled") source.close();
      });
    });
  }

  function copyButtons(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        navigator.clipboard.writeText(target.textContent.trim()).then(function () {
          button.textContent = "Copied";
        });
      });
    });
  }

  function init(root) {
    localizeTimes(root);
    copyButtons(root);
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    var region = document.querySelector("[data-live-run]");
    if (region && region.dataset.finished !== "1") followRun(region);
  });
  document.addEventListener("htmx:afterSettle", function (event) { init(event.target); });
})();
