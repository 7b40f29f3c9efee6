// Canh console: live wall (EventSource), deadline countdowns, keyboard triage, evidence
// upload, search progress, saved searches. Plain browser APIs; nothing leaves this server.
(function () {
  "use strict";
  var body = document.body;

  // ---- countdowns: "còn 3 g 05 ph" / "quá hạn 2 g" ----
  function countdowns() {
    var left = body.dataset.left || "", late = body.dataset.overdue || "";
    document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
      var due = Date.parse(el.dataset.due);
      if (isNaN(due)) { el.textContent = ""; return; }
      var ms = due - Date.now(), abs = Math.abs(ms);
      var d = Math.floor(abs / 86400000), h = Math.floor(abs % 86400000 / 3600000),
          m = Math.floor(abs % 3600000 / 60000), s = Math.floor(abs % 60000 / 1000);
      var txt = (d ? d + "d " : "") + String(h).padStart(2, "0") + ":" +
                String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
      el.textContent = ms >= 0 ? "(" + left + " " + txt + ")" : "(" + late + " " + txt + ")";
      el.classList.toggle("overdue", ms < 0);
    });
  }
  setInterval(countdowns, 1000);
  document.addEventListener("DOMContentLoaded", countdowns);
  document.addEventListener("htmx:afterSwap", countdowns);

  // ---- wall ----
  var audio = null, soundOn = false;
  function beep() {
    if (!soundOn) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.35].forEach(function (t) {
        var o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = 880; o.connect(g); g.connect(audio.destination);
        g.gain.setValueAtTime(0.25, audio.currentTime + t);
        o.start(audio.currentTime + t); o.stop(audio.currentTime + t + 0.25);
      });
    } catch (e) { /* no audio device: the flash still shows */ }
  }
  function startWall() {
    var list = document.getElementById("wall-alerts");
    if (!list) return;
    var status = document.getElementById("stream-status");
    var toggle = document.getElementById("sound-toggle");
    toggle.addEventListener("click", function () {
      soundOn = !soundOn;
      toggle.setAttribute("aria-pressed", String(soundOn));
      if (soundOn) beep();
    });
    // EventSource reconnects by itself after a network error or a server restart.
    var es = new EventSource("/console/wall/stream");
    es.addEventListener("ready", function () {
      status.textContent = status.dataset.ok; status.className = "dot live";
      body.dataset.stream = "ready";
    });
    es.onerror = function () {
      status.textContent = status.dataset.bad; status.className = "dot down";
      body.dataset.stream = "down";
    };
    es.addEventListener("alert", function (ev) {
      var tpl = document.createElement("template");
      tpl.innerHTML = ev.data.trim();
      var li = tpl.content.firstElementChild;
      if (!li) return;
      var old = document.getElementById(li.id);
      if (old) old.remove();
      li.classList.add("fresh");
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 100) list.lastElementChild.remove();
      var empty = document.getElementById("wall-empty");
      if (empty) empty.remove();
      if (li.dataset.sev === "emergency") {
        var f = document.getElementById("flash");
        f.classList.remove("on"); void f.offsetWidth; f.classList.add("on");
        beep();
      }
    });
  }

  // ---- triage ----
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#queue-body tr.alert-row")); }
  function current() { return document.querySelector("#queue-body tr.current"); }
  function select(tr) {
    if (!tr) return;
    rows().forEach(function (r) { r.classList.remove("current"); r.removeAttribute("aria-selected"); });
    tr.classList.add("current"); tr.setAttribute("aria-selected", "true");
    tr.focus({ preventScroll: false });
    tr.scrollIntoView({ block: "nearest" });
    if (window.htmx) htmx.ajax("GET", "/console/alerts/" + tr.dataset.id, { target: "#detail" });
  }
  function move(step) {
    var all = rows(); if (!all.length) return;
    var i = all.indexOf(current());
    var n = i < 0 ? 0 : Math.max(0, Math.min(all.length - 1, i + step));
    select(all[n]);
  }
  function targetIds() {
    var checked = Array.prototype.slice.call(document.querySelectorAll("#queue-body input.sel:checked"))
      .map(function (c) { return c.value; });
    if (checked.length) return checked;
    var cur = current();
    return cur ? [cur.dataset.id] : [];
  }
  function post(url, data) {
    var params = new URLSearchParams(data);
    return fetch(url, { method: "POST", body: params, credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" } })
      .then(function (r) {
        return r.text().then(function (t) { return { ok: r.ok, text: t, incident: r.headers.get("x-canh-incident") }; });
      });
  }
  function swapRows(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = "<table><tbody>" + html + "</tbody></table>";
    var keep = current() && current().id;
    tpl.content.querySelectorAll("tr.alert-row").forEach(function (tr) {
      var old = document.getElementById(tr.id);
      if (old) old.replaceWith(tr);
    });
    if (keep) { var k = document.getElementById(keep); if (k) { k.classList.add("current"); k.focus(); } }
  }
  function say(text) { var s = document.getElementById("triage-status"); if (s) s.textContent = text; }
  function triage(state, reason) {
    var ids = targetIds(); if (!ids.length) return;
    post("/console/alerts/triage", { ids: ids.join(","), state: state, reason: reason || "" }).then(function (r) {
      if (r.ok) { swapRows(r.text); say("✔ " + ids.map(function (i) { return "#" + i; }).join(" ")); }
      else { say(""); document.open(); document.write(r.text); document.close(); }
    });
  }
  function openDialog(id) { var d = document.getElementById(id); if (d && !d.open) d.showModal(); return d; }
  function escalate() {
    var ids = targetIds(); if (!ids.length) return;
    var cur = current() || document.getElementById("alert-" + ids[0]);
    var d = openDialog("escalate-dialog");
    document.getElementById("esc-title").value = cur ? cur.dataset.title : "";
    if (cur) {
      document.getElementById("esc-sev").value = cur.dataset.sev;
      document.getElementById("esc-agency").value = cur.dataset.agency || "";
    }
    document.getElementById("esc-title").focus();
    return d;
  }
  function startTriage() {
    var table = document.getElementById("queue");
    if (!table) return;
    var canWrite = table.dataset.canWrite === "true";
    document.querySelectorAll("dialog .cancel").forEach(function (b) {
      b.addEventListener("click", function () { b.closest("dialog").close(); });
    });
    var help = document.getElementById("help-open");
    if (help) help.addEventListener("click", function () { openDialog("help-dialog"); });
    document.querySelectorAll(".bulk button").forEach(function (b) {
      b.addEventListener("click", function () {
        var a = b.dataset.action;
        if (a === "escalate") escalate();
        else if (a === "false_positive" || a === "closed") reason(a);
        else triage(a);
      });
    });
    function reason(state) {
      if (!targetIds().length) return;
      openDialog("reason-dialog");
      document.getElementById("reason-state").value = state;
      var t = document.getElementById("reason-text"); t.value = ""; t.focus();
    }
    document.getElementById("reason-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      document.getElementById("reason-dialog").close();
      triage(document.getElementById("reason-state").value, document.getElementById("reason-text").value);
    });
    document.getElementById("escalate-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = new FormData(ev.target);
      var ids = targetIds();
      document.getElementById("escalate-dialog").close();
      post("/console/alerts/escalate", { ids: ids.join(","), title: f.get("title"),
        severity: f.get("severity"), agency: f.get("agency") }).then(function (r) {
        if (r.ok) {
          swapRows(r.text);
          say(r.incident ? "✔ #" + r.incident : "✔");
        } else { document.open(); document.write(r.text); document.close(); }
      });
    });
    rows().forEach(function (tr) {
      tr.addEventListener("click", function (ev) {
        if (ev.target.closest("a, input, button")) return;
        select(tr);
      });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var tag = (ev.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || document.querySelector("dialog[open]")) return;
      switch (ev.key) {
        case "j": move(1); break;
        case "k": move(-1); break;
        case "x": { var c = current(); var box = c && c.querySelector("input.sel"); if (box) box.checked = !box.checked; break; }
        case "Enter": { var cur = current(); if (cur) select(cur); else return; break; }
        case "a": if (canWrite) triage("acknowledged"); break;
        case "e": if (canWrite) escalate(); break;
        case "f": if (canWrite) reason("false_positive"); break;
        case "?": openDialog("help-dialog"); break;
        default: return;
      }
      ev.preventDefault();
    });
  }

  // ---- evidence upload: the file is streamed as the request body ----
  function startEvidence() {
    var form = document.getElementById("evidence-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = document.getElementById("evidence-file").files[0];
      if (!file) return;
      var desc = document.getElementById("evidence-desc").value;
      var url = "/console/incidents/" + form.dataset.incident + "/evidence?filename=" +
        encodeURIComponent(file.name) + "&description=" + encodeURIComponent(desc);
      var out = document.getElementById("evidence-result");
      fetch(url, { method: "POST", body: file, credentials: "same-origin" }).then(function (r) {
        return r.text().then(function (t) {
          out.innerHTML = r.ok ? t : "<p class='bad'>" + r.status + "</p>";
          if (r.ok) setTimeout(function () { location.reload(); }, 800);
        });
      });
    });
  }

  // ---- search: progress, cancel, columns ----
  // The search runs as a fetch with a query id; Cancel aborts the fetch (the server drops the
  // work with the connection) and also tells the server by id. Saved searches are server-side.
  var searching = null;
  function queryId() {
    var b = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
  }
  function runSearch(form, extra) {
    if (searching) return;
    var progress = document.getElementById("progress");
    var text = document.getElementById("progress-text");
    var elapsed = document.getElementById("elapsed");
    var params = new URLSearchParams(new FormData(form));
    if (extra) Object.keys(extra).forEach(function (k) { params.set(k, extra[k]); });
    var shown = form.getAttribute("action") + "?" + params.toString();
    var qid = queryId();
    params.set("qid", qid);
    var ctl = new AbortController();
    var started = Date.now();
    var timer = setInterval(function () {
      elapsed.textContent = Math.floor((Date.now() - started) / 1000) + " s";
    }, 500);
    searching = { ctl: ctl, qid: qid, timer: timer };
    text.textContent = text.dataset.running;
    elapsed.textContent = "";
    document.getElementById("search-cancel").hidden = false;
    progress.hidden = false;
    body.dataset.search = "running";
    body.dataset.qid = qid;
    fetch(form.getAttribute("action") + "?" + params.toString(),
          { signal: ctl.signal, credentials: "same-origin" })
      .then(function (r) { return r.text().then(function (t) { return { status: r.status, text: t }; }); })
      .then(function (r) {
        clearInterval(timer);
        searching = null;
        var doc = new DOMParser().parseFromString(r.text, "text/html");
        var main = doc.getElementById("main");
        if (!main) { location.assign(shown); return; }
        document.getElementById("main").replaceWith(main);
        document.title = doc.title;
        history.pushState({ search: true }, "", shown);
        body.dataset.search = r.status === 499 ? "cancelled" : "done";
        startSearch();
      })
      .catch(function () {
        clearInterval(timer);
        searching = null;
        text.textContent = text.dataset.cancelled;
        var cancel = document.getElementById("search-cancel");
        if (cancel) cancel.hidden = true;
        body.dataset.search = "cancelled";
      });
  }
  function cancelSearch() {
    if (!searching) return;
    var s = searching;
    searching = null;
    clearInterval(s.timer);
    // Tell the server first, then drop the connection.
    fetch("/console/search/cancel", { method: "POST", credentials: "same-origin",
      body: new URLSearchParams({ qid: s.qid }),
      headers: { "Content-Type": "application/x-www-form-urlencoded" } })
      .catch(function () { /* the aborted connection stops the work anyway */ });
    s.ctl.abort();
  }
  function startSearch() {
    var form = document.getElementById("search-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) { ev.preventDefault(); runSearch(form); });
    var cancel = document.getElementById("search-cancel");
    cancel.hidden = false;
    cancel.addEventListener("click", cancelSearch);
    var chooser = document.getElementById("col-chooser");
    if (chooser) chooser.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var cols = Array.prototype.slice.call(chooser.querySelectorAll("input:checked")).map(function (c) { return c.value; });
      document.getElementById("cols").value = cols.join(",");
      runSearch(form);
    });
  }
  window.addEventListener("popstate", function () {
    if (document.getElementById("search-form")) location.reload();
  });
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (ev.key === "/" && tag !== "input" && tag !== "textarea") {
      var q = document.getElementById("q"); if (q) { ev.preventDefault(); q.focus(); }
    }
    if (ev.key === "Escape" && searching) { ev.preventDefault(); cancelSearch(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    startWall(); startTriage(); startEvidence(); startSearch();
  });
})();
