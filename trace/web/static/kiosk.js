/* Kiosk (溯源一体机): a barcode scanner "types" the label's QR payload and presses Enter.
   Keep the input focused, post what was typed, show the verdict large, and return to the
   idle screen after data-idle seconds. No framework, no build step. */
(function () {
  "use strict";
  var root = document.getElementById("kiosk");
  if (!root) return;
  var idleSeconds = parseInt(root.getAttribute("data-idle"), 10) || 20;
  var input = document.getElementById("code-input");
  var form = document.getElementById("scan-form");
  var status = document.getElementById("status");
  var idle = document.getElementById("idle");
  var result = document.getElementById("result");
  var timer = null;
  var busy = false;

  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value || ""; }

  function showIdle() {
    clearInterval(timer);
    timer = null;
    result.hidden = true;
    idle.hidden = false;
    root.setAttribute("data-state", "idle");
    input.value = "";
    status.textContent = "";
    input.focus();
  }

  function countdown() {
    var left = idleSeconds;
    var back = root.getAttribute("data-back");
    text("countdown", left + " " + back);
    clearInterval(timer);
    timer = setInterval(function () {
      left -= 1;
      if (left <= 0) { showIdle(); return; }
      text("countdown", left + " " + back);
    }, 1000);
  }

  function showResult(data) {
    var words = data.words;
    var verdict = $("verdict");
    verdict.className = "verdict v-" + data.verdict;
    verdict.setAttribute("data-verdict", data.verdict);
    text("verdict-title", words.title);
    var lines = $("verdict-lines");
    lines.innerHTML = "";
    (words.lines || []).forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      lines.appendChild(p);
    });
    var notice = $("verdict-notice");
    notice.hidden = !words.notice;
    notice.textContent = words.notice || "";
    text("verdict-advice", words.advice);
    var summary = $("summary");
    summary.hidden = !data.summary;
    if (data.summary) {
      text("product", data.summary.product);
      text("spec", [data.summary.spec, data.summary.batch_no].filter(Boolean).join(" · "));
      var facts = $("facts");
      facts.innerHTML = "";
      data.summary.lines.forEach(function (pair) {
        var dt = document.createElement("dt");
        var dd = document.createElement("dd");
        dt.textContent = pair[0];
        dd.textContent = pair[1];
        facts.appendChild(dt);
        facts.appendChild(dd);
      });
    }
    idle.hidden = true;
    result.hidden = false;
    root.setAttribute("data-state", "result");
    input.value = "";
    countdown();
  }

  function submit(code) {
    if (busy || !code) return;
    busy = true;
    status.textContent = root.getAttribute("data-busy");
    fetch(root.getAttribute("data-scan-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: code })
    }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.json();
    }).then(showResult).catch(function () {
      status.textContent = root.getAttribute("data-error");
      input.value = "";
    }).then(function () { busy = false; input.focus(); });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    submit(input.value.trim());
  });
  // The scanner types wherever the focus is: keep it on the input, also on the result
  // screen, so the next customer's scan starts a new lookup at once.
  document.addEventListener("click", function () { input.focus(); });
  input.addEventListener("blur", function () { setTimeout(function () { input.focus(); }, 0); });
  document.addEventListener("keydown", function (e) {
    if (document.activeElement !== input && e.key && e.key.length === 1) input.focus();
  });
  showIdle();
})();
