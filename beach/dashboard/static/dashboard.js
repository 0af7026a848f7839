/* beach dashboard: keeps the server-rendered page live, draws its charts, runs its admin actions.
 *
 * - Live: one EventSource on /events (the page's own view and parameters). The server sends the
 *   page's fragments re-rendered from the same templates ("fragments"), new log rows ("logs"), new
 *   chart points ("history"), or that the page's subject left ("gone"). EventSource reconnects by
 *   itself; while it is down a banner says so. A stream refused outright (the dashboard is at its
 *   cap of live streams: 503) makes the page poll /events/poll instead, every POLL_MS, for the same
 *   frames; it tries the stream again every STREAM_RETRY_MS.
 * - Charts: uPlot, one per <figure data-chart>, fed first by the JSON embedded in the page, then by
 *   the stream. Drag to zoom, double-click to reset; a zoomed chart stays put as points arrive.
 * - Admin actions: buttons with data-action, confirmed in a <dialog>, sent as POSTs with the page's
 *   CSRF token (the buttons exist only when the dashboard has the admin token).
 */
(function () {
  "use strict";

  const body = document.body;
  const root = body.dataset.root || "";
  const PALETTE = ["#0e7490", "#d97706", "#7c3aed", "#16a34a", "#dc2626", "#2563eb", "#db2777", "#65a30d",
                   "#0891b2", "#9333ea", "#ea580c", "#475569"];
  const KEEP_SECONDS = 12 * 3600;  // as the model: 12 hours of history
  const FINE_SECONDS = 600;        // the last 10 minutes at full resolution ...
  const COARSE_STEP = 10;          // ... older points averaged into 10 s buckets
  const MAX_POINTS = 6000;         // per series, before compacting
  const STALE_SECONDS = 15;        // a legend shows no value for a series silent this long
  const POLL_MS = 5000;            // refused a stream: how often the page asks for its frames instead
  const STREAM_RETRY_MS = 60000;   // ... and how often it tries the stream again
  const beach = { charts: {}, stream: null, connected: false, polling: false };
  window.beach = beach;            // for the curious (and the tests)

  // ------------------------------------------------------------------ charts

  function compact(points) {
    const last = points[points.length - 1][0];
    const keep = points.filter((p) => p[0] >= last - KEEP_SECONDS);
    if (keep.length <= MAX_POINTS) return keep;
    const cut = last - FINE_SECONDS;
    const buckets = new Map();
    const fine = [];
    for (const [t, v] of keep) {
      if (t >= cut) { fine.push([t, v]); continue; }
      const start = t - (t % COARSE_STEP);
      const b = buckets.get(start) || [0, 0];
      b[0] += v; b[1] += 1;
      buckets.set(start, b);
    }
    const coarse = [...buckets.entries()].map(([t, b]) => [t, b[0] / b[1]]);
    return coarse.concat(fine);
  }

  function clock(t, step) {
    // one line per tick, to the precision the ticks are spaced at (seconds only when they are)
    const d = new Date(t * 1000);
    const two = (n) => String(n).padStart(2, "0");
    const hm = two(d.getHours()) + ":" + two(d.getMinutes());
    return step < 60 ? hm + ":" + two(d.getSeconds()) : hm;
  }

  function formatValue(v, unit) {
    if (v == null) return "–";
    const digits = Math.abs(v) >= 100 ? 0 : 1;
    return v.toFixed(digits) + (unit === "%" ? " %" : " " + unit);
  }

  function latestAt(u, si, idx) {
    // the series' value at or before idx: with several series on one time axis, most times are another's;
    // a series silent for longer than STALE_SECONDS (a node that left) has no value there
    const xs = u.data[0];
    const ys = u.data[si];
    const at = idx == null ? ys.length - 1 : idx;
    for (let i = at; i >= 0 && xs[at] - xs[i] <= STALE_SECONDS; i--) if (ys[i] != null) return ys[i];
    return null;
  }

  class Chart {
    constructor(figure) {
      this.figure = figure;
      this.key = figure.dataset.chart;
      this.unit = figure.dataset.unit;
      this.axis = figure.dataset.axis;
      this.plotEl = figure.querySelector(".plot");
      this.height = 140;
      this.series = new Map();  // name → [[t, v], ...], oldest first
      this.plot = null;
      this.names = "";
      new ResizeObserver(() => this.resize()).observe(this.plotEl);
    }

    merge(update) {
      for (const [name, points] of Object.entries(update || {})) {
        let known = this.series.get(name);
        if (!known) { known = []; this.series.set(name, known); }
        const lastT = known.length ? known[known.length - 1][0] : -Infinity;
        for (const p of points) {
          if (p[0] > lastT) known.push(p);  // a reconnect may send points again: keep each once
        }
        if (known.length) this.series.set(name, compact(known));
      }
      this.draw();
    }

    aligned(names) {
      // uPlot wants one x array for all series: the union of their times (to the second)
      const times = new Set();
      for (const name of names) for (const [t] of this.series.get(name)) times.add(Math.round(t));
      const xs = [...times].sort((a, b) => a - b);
      const index = new Map(xs.map((t, i) => [t, i]));
      const data = [xs];
      for (const name of names) {
        const ys = new Array(xs.length).fill(null);
        for (const [t, v] of this.series.get(name)) ys[index.get(Math.round(t))] = v;
        data.push(ys);
      }
      return data;
    }

    options(names) {
      const unit = this.unit;
      const percent = unit === "%";
      return {
        width: Math.max(200, this.plotEl.clientWidth),
        height: this.height,
        cursor: { drag: { x: true, y: false, setScale: true } },
        scales: {
          x: { time: true },
          y: { range: percent ? [0, 100] : (u, min, max) => [0, Math.max(1, (max || 0) * 1.15)] },
        },
        axes: [
          {
            stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, ticks: { stroke: "#e5e7eb" }, space: 64, size: 30,
            values: (u, splits, axis, space, step) => splits.map((t) => clock(t, step)),
          },
          {
            label: this.axis, stroke: "#6b7280", size: 56, labelSize: 18,
            grid: { stroke: "#f0f1f3" }, ticks: { stroke: "#e5e7eb" },
            values: (u, splits) => splits.map((v) => (percent ? v + " %" : String(v))),
          },
        ],
        series: [
          { label: "time", value: (u, t) => (t == null ? "–" : clock(t, 1)) },
          ...names.map((name, i) => ({
            label: name, stroke: PALETTE[i % PALETTE.length], width: 1.6, spanGaps: true,
            points: { show: false }, value: (u, v, si, idx) => formatValue(v == null ? latestAt(u, si, idx) : v, unit),
          })),
        ],
        legend: { live: true },
      };
    }

    draw() {
      const names = [...this.series.keys()].filter((n) => this.series.get(n).length).sort();
      this.figure.classList.toggle("has-data", names.length > 0);
      if (!names.length) return;
      const data = this.aligned(names);
      if (this.plot && this.names === names.join("\n")) {
        const x = this.plot.scales.x;
        const old = this.plot.data[0];
        const zoomed = old.length > 1 && x.min != null && (x.min > old[0] + 0.5 || x.max < old[old.length - 1] - 0.5);
        this.plot.setData(data, !zoomed);  // zoomed in: keep the view; else follow the new points
      } else {
        if (this.plot) this.plot.destroy();  // a new series (node, realm, class): rebuild the legend
        this.names = names.join("\n");
        this.plot = new uPlot(this.options(names), data, this.plotEl);
      }
      if (this.plot.cursor.left == null || this.plot.cursor.left < 0) {
        this.plot.setLegend({ idx: data[0].length - 1 });  // not hovered: the legend shows the latest values
      }
    }

    resize() {
      if (this.plot && this.plotEl.clientWidth) {
        this.plot.setSize({ width: Math.max(200, this.plotEl.clientWidth), height: this.height });
      }
    }

    latest() {
      let t = 0;
      for (const points of this.series.values()) if (points.length) t = Math.max(t, points[points.length - 1][0]);
      return t;
    }
  }

  function setUpCharts() {
    const source = document.getElementById("history-data");
    const initial = source ? JSON.parse(source.textContent || "null") || {} : {};
    for (const figure of document.querySelectorAll("figure[data-chart]")) {
      const chart = new Chart(figure);
      beach.charts[chart.key] = chart;
      chart.merge(initial[chart.key]);
    }
  }

  function applyHistory(update) {
    for (const [key, series] of Object.entries(update)) {
      if (beach.charts[key]) beach.charts[key].merge(series);
    }
  }

  // ------------------------------------------------------------------ live updates

  function morph(target, source) {
    // make target's children match source's, touching only what differs: a re-rendered table keeps
    // the reader's text selection and hover wherever the figures did not change
    const before = [...target.childNodes];
    const after = [...source.childNodes];
    after.forEach((node, i) => {
      const old = before[i];
      if (!old) target.appendChild(node);
      else if (old.nodeType !== node.nodeType || old.nodeName !== node.nodeName) target.replaceChild(node, old);
      else if (old.nodeType === Node.TEXT_NODE) { if (old.nodeValue !== node.nodeValue) old.nodeValue = node.nodeValue; }
      else if (old.nodeType !== Node.ELEMENT_NODE) target.replaceChild(node, old);
      else if (old.outerHTML !== node.outerHTML) {
        for (const { name } of [...old.attributes]) if (!node.hasAttribute(name)) old.removeAttribute(name);
        for (const { name, value } of [...node.attributes]) if (old.getAttribute(name) !== value) old.setAttribute(name, value);
        morph(old, node);
      }
    });
    for (const node of before.slice(after.length)) node.remove();
  }

  function applyFragments(fragments) {
    for (const [id, html] of Object.entries(fragments)) {
      const element = document.getElementById(id);
      if (!element) continue;
      const fresh = document.createElement(element.tagName);
      fresh.innerHTML = html;
      morph(element, fresh);
    }
  }

  function applyLogs(update) {
    const rows = document.getElementById("log-rows");
    if (!rows) return;
    if (update.replace) {
      rows.innerHTML = update.html;
      return;
    }
    const empty = rows.querySelector("tr.empty");
    if (empty) empty.remove();
    const holder = document.createElement("tbody");
    holder.innerHTML = update.html;
    const fresh = [...holder.children];
    fresh.forEach((row) => row.classList.add("fresh"));
    rows.prepend(...fresh);
    const limit = parseInt(rows.dataset.limit || "100", 10);
    while (rows.children.length > limit) rows.lastElementChild.remove();
  }

  function showGone(message) {
    const gone = document.getElementById("gone");
    if (gone) {
      gone.textContent = message.charAt(0).toUpperCase() + message.slice(1) + ". What this page shows is its last state.";
      gone.hidden = false;
    }
    for (const button of document.querySelectorAll("main button[data-action]")) button.disabled = true;
  }

  let bannerTimer = null;
  function setLive(up, polled) {
    beach.connected = up;
    const live = document.getElementById("live");
    if (live) {
      live.textContent = up ? (polled ? "polling" : "live") : "reconnecting…";
      live.className = "pill " + (up ? (polled ? "warn" : "ok") : "bad");
      live.title = polled ? "the dashboard has as many live streams open as it takes: this page refreshes every "
                            + POLL_MS / 1000 + " s instead" : "live updates from the dashboard";
    }
    const banner = document.getElementById("banner");
    clearTimeout(bannerTimer);
    if (up) banner.hidden = true;
    else bannerTimer = setTimeout(() => { banner.hidden = beach.connected; }, 400);  // not for a page being left
  }

  function since() {
    let t = 0;
    for (const chart of Object.values(beach.charts)) t = Math.max(t, chart.latest());
    return t ? t - 5 : 0;  // a little before: node heartbeats may be timed a bit behind the latest tick
  }

  function applyFrames(frames) {
    if (frames.fragments) applyFragments(frames.fragments);
    if (frames.logs) applyLogs(frames.logs);
    if (frames.history) applyHistory(frames.history);
    if (frames.gone) showGone(frames.gone.message);
  }

  let pollTimer = null;
  async function poll() {
    try {
      const response = await fetch(root + "/events/poll?" + body.dataset.stream + "&since=" + since(),
                                   { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      applyFrames(await response.json());
      if (beach.polling) setLive(true, true);
    } catch (err) {
      setLive(false);  // the dashboard itself is away
    }
  }

  function startPolling() {
    beach.polling = true;
    if (pollTimer === null) {
      poll();
      pollTimer = setInterval(poll, POLL_MS);
    }
    setTimeout(connect, STREAM_RETRY_MS);
  }

  function stopPolling() {
    beach.polling = false;
    if (pollTimer !== null) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (!body.dataset.stream) return;
    const stream = new EventSource(root + "/events?" + body.dataset.stream + "&since=" + since());
    beach.stream = stream;
    stream.addEventListener("open", () => { stopPolling(); setLive(true); });
    stream.addEventListener("error", () => {
      if (stream.readyState === EventSource.CLOSED) {  // refused outright (at the cap, or down): poll meanwhile
        startPolling();
      } else {
        setLive(false);
      }
    });
    stream.addEventListener("fragments", (e) => applyFragments(JSON.parse(e.data)));
    stream.addEventListener("logs", (e) => applyLogs(JSON.parse(e.data)));
    stream.addEventListener("history", (e) => applyHistory(JSON.parse(e.data)));
    stream.addEventListener("gone", (e) => showGone(JSON.parse(e.data).message));
  }

  // ------------------------------------------------------------------ admin actions

  let toastTimer = null;
  function toast(message, bad) {
    const element = document.getElementById("toast");
    element.textContent = message;
    element.className = bad ? "bad" : "";
    element.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { element.hidden = true; }, bad ? 8000 : 4000);
  }

  function confirmThen(button, action) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = button.dataset.title || "Are you sure?";
    document.getElementById("confirm-text").textContent = button.dataset.text || "";
    document.getElementById("confirm-ok").textContent = button.dataset.verb || "Confirm";
    dialog.returnValue = "";
    dialog.addEventListener("close", () => { if (dialog.returnValue === "ok") action(); }, { once: true });
    dialog.showModal();
  }

  async function post(button) {
    const token = document.querySelector('meta[name="beach-csrf"]');
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": token ? token.content : "", "Accept": "application/json" },
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) toast(button.dataset.done || "Done");
      else toast((answer && answer.error) || "Refused: HTTP " + response.status, true);
    } catch (err) {
      toast("The dashboard did not answer: " + err, true);
    } finally {
      button.disabled = false;  // a stopped actor's row goes with the next update anyway
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button && !button.disabled) confirmThen(button, () => post(button));
  });

  // ------------------------------------------------------------------ start

  function start() {
    if (typeof uPlot !== "undefined") setUpCharts();
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
