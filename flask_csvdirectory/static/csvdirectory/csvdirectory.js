/* flask-csvdirectory dashboard: confirmations, the two-file upload, live run progress. */
(function () {
  "use strict";

  // Forms with data-confirm (approve, reject, revoke) ask first; without JS they just submit.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Upload: the submit button stays disabled until both files are chosen.
  document.querySelectorAll("form[data-csvd-upload]").forEach(function (form) {
    var inputs = Array.prototype.slice.call(form.querySelectorAll("input[type=file]"));
    var button = form.querySelector("button[type=submit]");
    var hint = form.querySelector("[data-csvd-upload-hint]");
    function update() {
      var ready = inputs.every(function (input) { return input.files.length > 0; });
      button.disabled = !ready;
      if (hint) hint.hidden = ready;
    }
    inputs.forEach(function (input) { input.addEventListener("change", update); });
    window.addEventListener("pageshow", update);
    update();
  });

  // Run page: poll the status endpoint; patch progress in place, reload when the status changes.
  var panel = document.querySelector("[data-csvd-status-url]");
  if (panel) {
    var url = panel.getAttribute("data-csvd-status-url");
    var state = panel.getAttribute("data-csvd-state");
    var phase = panel.querySelector("[data-csvd-phase]");
    var count = panel.querySelector("[data-csvd-count]");
    var bar = panel.querySelector("[data-csvd-progress]");
    var poll = function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (data) {
          if (data.state !== state) { window.location.reload(); return; }
          phase.textContent = data.phase_label;
          var total = data.progress.total;
          count.textContent = total ? ": " + data.progress.done + " of " + total + " changes" : "";
          if (total) { bar.max = total; bar.value = data.progress.done; } else { bar.removeAttribute("value"); }
          window.setTimeout(poll, 1000);
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    };
    window.setTimeout(poll, 1000);
  }
})();
