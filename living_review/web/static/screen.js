// Keyboard screening: i include, e + 1-8 exclude with a reason, m maybe, u undo, n / ArrowRight next.
// Plain form posts (no fetch): a double press sends the same client_token, which the server ignores.
(function () {
  "use strict";
  var form = document.getElementById("decision-form");
  var undoForm = document.getElementById("undo-form");
  var reasons = document.getElementById("reasons");
  var reasonInput = document.getElementById("reason-input");
  var sent = false;

  function submitWith(decision, reason) {
    if (!form || sent) return;
    sent = true;
    reasonInput.value = reason || "";
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = "decision"; hidden.value = decision;
    form.appendChild(hidden);
    document.body.classList.add("busy");
    form.submit();
  }
  function showReasons(show) {
    if (!reasons) return;
    reasons.hidden = !show;
    if (show) reasons.querySelector("button").focus({preventScroll: true});
  }
  if (form) {
    document.getElementById("btn-exclude").addEventListener("click", function () { showReasons(reasons.hidden); });
    reasons.querySelectorAll("button.reason").forEach(function (b) {
      b.addEventListener("click", function (ev) { ev.preventDefault(); submitWith("exclude", b.dataset.reason); });
    });
    form.addEventListener("submit", function (ev) {
      if (sent) { ev.preventDefault(); return; }  // a second click while the first post is on its way
      var btn = ev.submitter;
      if (btn && btn.value) { ev.preventDefault(); submitWith(btn.value, btn.dataset.reason); }
    });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    var k = ev.key;
    if (reasons && !reasons.hidden) {
      if (/^[1-9]$/.test(k)) {
        var btns = reasons.querySelectorAll("button.reason");
        var b = btns[parseInt(k, 10) - 1];
        if (b) { ev.preventDefault(); submitWith("exclude", b.dataset.reason); }
        return;
      }
      if (k === "Escape") { ev.preventDefault(); showReasons(false); return; }
    }
    if (k === "u") { ev.preventDefault(); if (!sent) { sent = true; undoForm.submit(); } return; }
    if (!form) return;
    if (k === "i") { ev.preventDefault(); submitWith("include"); }
    else if (k === "e") { ev.preventDefault(); showReasons(true); }
    else if (k === "m") { ev.preventDefault(); submitWith("maybe"); }
    else if (k === "n" || k === "ArrowRight") { ev.preventDefault(); window.location.href = document.getElementById("btn-next").href; }
  });
})();
