/* flask-csvdirectory dashboard: local times, confirmations, copy, pre-flight check, honest
   run progress. Every page works without it; this only makes it nicer. */
(function () {
  "use strict";

  // <time data-csvd-time>: the UTC text becomes the browser's local time, to the second; the
  // UTC stays in the title, shown on hover.
  function localTimes(root) {
    root.querySelectorAll("time[data-csvd-time]").forEach(function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      var options = { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
                      minute: "2-digit", second: "2-digit", timeZoneName: "short" };
      element.textContent = new Intl.DateTimeFormat(undefined, options).format(date);
    });
  }
  localTimes(document);

  // Forms with data-confirm (approve, reject, revoke) ask first; without JS they just submit.
  document.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    if (submitter && submitter.hasAttribute("formaction")) return;
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Copy buttons (the new API token).
  document.querySelectorAll("[data-csvd-copy]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-csvd-copy"));
    var status = button.parentNode.querySelector("[data-csvd-copy-status]");
    button.addEventListener("click", function () {
      input.select();
      var done = function () { if (status) status.textContent = "Copied to the clipboard."; };
      var fallback = function () {
        try { document.execCommand("copy"); done(); }
        catch (error) { if (status) status.textContent = "Select the token and copy it by hand."; }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, fallback);
      } else { fallback(); }
    });
  });
  var created = document.getElementById("csvd-new-token-heading");
  if (created) created.focus();

  // Upload: the buttons stay disabled until both files are chosen; "Check files" runs the
  // pre-flight check in place, so the chosen files stay chosen for "Start sync".
  document.querySelectorAll("form[data-csvd-upload]").forEach(function (form) {
    var inputs = Array.prototype.slice.call(form.querySelectorAll("input[type=file]"));
    var start = form.querySelector("[data-csvd-start]");
    var check = form.querySelector("[data-csvd-check]");
    var closed = start.disabled;
    var hint = form.querySelector("[data-csvd-upload-hint]");
    function update() {
      var ready = inputs.every(function (input) { return input.files.length > 0; });
      start.disabled = closed || !ready;
      check.disabled = !ready;
      if (hint) hint.hidden = ready;
    }
    inputs.forEach(function (input) { input.addEventListener("change", update); });
    window.addEventListener("pageshow", update);
    update();

    check.addEventListener("click", function (event) {
      event.preventDefault();
      var target = document.getElementById("csvd-check");
      check.disabled = true;
      check.textContent = "Checking…";
      fetch(check.getAttribute("formaction"), {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" }
      }).then(function (response) {
        if (response.redirected || !(response.headers.get("Content-Type") || "").includes("text/html")) {
          throw new Error("signed-out");
        }
        return response.text();
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("csvd-check");
        if (!fresh) throw new Error("unexpected");
        target.innerHTML = fresh.innerHTML;
        target.hidden = false;
        var note = target.querySelector("[data-csvd-nojs-note]");
        if (note) note.hidden = true;
        localTimes(target);
        target.focus();
      }).catch(function (error) {
        target.hidden = false;
        target.innerHTML = '<div class="csvd-callout csvd-callout--error" role="alert"><p></p></div>';
        target.querySelector("p").textContent = error.message === "signed-out"
          ? "The check could not run: you are signed out. Reload the page and sign in again."
          : "The check could not run: the server could not be reached. Try again.";
        target.focus();
      }).finally(function () {
        check.textContent = "Check files";
        update();
      });
    });
  });

  // Run page: poll the status endpoint; patch progress in place, reload when the status
  // changes. Any failed check stops polling and says why: never a silent, endless spinner.
  var panel = document.querySelector("[data-csvd-status-url]");
  if (panel) {
    var url = panel.getAttribute("data-csvd-status-url");
    var state = panel.getAttribute("data-csvd-state");
    var phase = panel.querySelector("[data-csvd-phase]");
    var count = panel.querySelector("[data-csvd-count]");
    var bar = panel.querySelector("[data-csvd-progress]");
    var failure = panel.querySelector("[data-csvd-poll-error]");
    var spinner = panel.querySelector(".csvd-spinner");
    var steps = Array.prototype.slice.call(panel.querySelectorAll("[data-csvd-phase-step]"));
    var MESSAGES = {
      401: "You are signed out, so this page stopped following the run. Sign in again to see how it ended.",
      403: "You no longer have access to this dashboard, so this page stopped following the run.",
      network: "The connection to the server was lost, so this page stopped following the run. The run itself goes on.",
      server: "The server could not report the run's status, so this page stopped following the run. The run itself goes on."
    };
    var stop = function (reason) {
      var message = MESSAGES[reason] || MESSAGES.server;
      if (reason !== 401 && reason !== 403 && reason !== "network") message += " (HTTP " + reason + ")";
      failure.querySelector("[data-csvd-poll-message]").textContent = message;
      failure.hidden = false;
      if (spinner) spinner.hidden = true;
      bar.hidden = true;
      var hint = panel.querySelector("[data-csvd-poll-hint]");
      if (hint) hint.hidden = true;
      panel.setAttribute("data-csvd-stopped", String(reason));
    };
    var showPhase = function (name) {
      var reached = false;
      steps.forEach(function (step) {
        var current = step.getAttribute("data-csvd-phase-step") === name;
        if (current) reached = true;
        step.className = current ? "csvd-current" : (reached ? "" : "csvd-done");
        if (current) step.setAttribute("aria-current", "step"); else step.removeAttribute("aria-current");
      });
    };
    var poll = function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
                   cache: "no-store", redirect: "manual" })
        .then(function (response) {
          if (response.type === "opaqueredirect" || response.status === 401) { stop(401); return null; }
          if (!response.ok) { stop(response.status); return null; }
          if (!(response.headers.get("Content-Type") || "").includes("application/json")) { stop(401); return null; }
          return response.json();
        }, function () { stop("network"); return null; })
        .then(function (data) {
          if (!data) return;
          if (data.state !== state) { window.location.reload(); return; }
          phase.textContent = data.phase_label;
          showPhase(data.phase);
          var total = data.progress.total;
          count.textContent = total ? ": " + data.progress.done + " of " + total + " changes" : "";
          if (total) { bar.max = total; bar.value = data.progress.done; } else { bar.removeAttribute("value"); }
          window.setTimeout(poll, 1000);
        })
        .catch(function () { stop("server"); });
    };
    window.setTimeout(poll, 1000);
  }
})();
