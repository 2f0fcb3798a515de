// Darkstar web app: reads the JSON API (/api/...), listens to /api/events (SSE), draws with uPlot.
"use strict";
(function () {
  const body = document.body;
  const BASE = body.dataset.base || "";
  const TZ = body.dataset.tz || "UTC";
  const CUR = body.dataset.currency || "";
  const $ = (sel) => document.querySelector(sel);
  const state = { csrf: body.dataset.csrf || "", handlers: {}, charts: [] };
  window.darkstar = state; // for the browser tests and benchmarks

  // ------------------------------------------------------------------ API
  async function api(path, opts = {}) {
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
    const res = await fetch(BASE + path, { method: opts.method || "GET", headers, body: opts.body, credentials: "same-origin" });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!res.ok) {
      let detail = data && data.detail;
      if (detail && detail.errors) detail = Object.entries(detail.errors).map(([k, v]) => `${k}: ${v}`).join("; ");
      if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
      const err = new Error(detail || res.statusText); err.status = res.status; throw err;
    }
    return data;
  }
  state.api = api;

  const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const money = (v) => (v === null || v === undefined ? "not known" : `${fmt(v, 2)} ${CUR}`);
  const localTime = (iso) => new Date(iso).toLocaleString("sv-SE", { timeZone: TZ, dateStyle: "short", timeStyle: "short" });
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // ------------------------------------------------------------------ sign-in
  const login = $("#login");
  if (login) login.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/login", { method: "POST", json: { token: login.token.value } });
      location.reload();
    } catch (e) { login.token.value = ""; login.token.placeholder = e.status === 401 ? "wrong token" : e.message; }
  });
  const logout = $("#logout");
  if (logout) logout.addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); location.reload(); });

  // ------------------------------------------------------------------ live events (SSE), auto reconnect
  function connect() {
    const es = new EventSource(BASE + "/api/events");
    state.events = es;
    es.onopen = () => { $("#live").hidden = true; state.live = true; if (state.reconnected) refreshAll(); };
    es.onerror = () => { $("#live").hidden = false; state.live = false; state.reconnected = true; };
    for (const kind of ["plan", "forecast", "prices", "telemetry", "executor_state", "error", "command_result", "context"]) {
      es.addEventListener(kind, (ev) => {
        const data = JSON.parse(ev.data);
        (state.handlers[kind] || []).forEach((fn) => fn(data, performance.now()));
        (state.handlers["*"] || []).forEach((fn) => fn(kind, data));
      });
    }
  }
  function on(kind, fn) { (state.handlers[kind] = state.handlers[kind] || []).push(fn); }
  function debounce(fn, ms) { let t = null; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }
  let refreshAll = () => {};

  // ------------------------------------------------------------------ banners and cards
  function showBanners(list) {
    $("#banners").innerHTML = list.map((b) => `<div class="banner ${esc(b.level)}">${esc(b.text)}</div>`).join("");
  }
  function showFlow(flow) {
    const el = $("#now-flow");
    if (!el) return;
    if (!flow) { el.innerHTML = "<dt>power flow</dt><dd>no telemetry</dd>"; return; }
    const rows = [["SoC", flow.soc_pct, "%", 0], ["PV", flow.pv_kw, "kW"], ["Load", flow.load_kw, "kW"],
      ["Grid (+import)", flow.grid_kw, "kW"], ["Battery (+charge)", flow.battery_kw, "kW"]];
    if (flow.water_kw) rows.push(["Water heater", flow.water_kw, "kW"]);
    if (flow.ev_kw) rows.push(["EV", flow.ev_kw, "kW"]);
    el.innerHTML = rows.map(([k, v, u, d]) => `<dt>${k}</dt><dd>${fmt(v, d === undefined ? 2 : d)} ${u}</dd>`).join("");
  }
  function overrideText(o) {
    if (!o) return "following the plan";
    return `${o.kind.replace("_", " ")}${o.power_kw != null ? " at " + fmt(o.power_kw, 1) + " kW" : ""}` +
      (o.target_soc_frac != null ? ` to ${Math.round(o.target_soc_frac * 100)} %` : "") +
      (o.expires_at ? ` until ${localTime(o.expires_at)}` : "");
  }
  async function loadOverview() {
    const o = await api("/api/overview");
    showBanners(o.banners);
    if ($("#now-mode")) {
      const n = o.now;
      $("#site-time").textContent = localTime(o.site_time);
      $("#now-mode").textContent = (n.executor_mode || n.planned_mode || "unknown").replace(/_/g, " ");
      $("#now-reason").textContent = n.override ? "Override: " + overrideText(n.override) : n.reason;
      showFlow(n.flow);
      $("#m-so-far").textContent = money(o.today.so_far);
      $("#m-planned").textContent = money(o.today.planned_day);
      $("#m-saving").textContent = money(o.today.saving_so_far);
      const orc = o.today.oracle;  // the oracle judges a day after it ends (nightly): the newest judged day
      $("#m-oracle-label").textContent = orc ? `Vs the oracle (${orc.day})` : "Vs the oracle";
      $("#m-oracle").textContent = orc ? `${money(orc.realized)} vs ${money(orc.oracle)}, regret ${money(orc.regret)}` : "known after the first night";
    }
    return o;
  }

  // ------------------------------------------------------------------ the chart (two panels, one x range)
  const stepped = uPlot.paths.stepped({ align: 1 });
  const S = (label, scale, stroke, extra = {}) => Object.assign({ label, scale, stroke, width: 1.5, paths: stepped, spanGaps: false }, extra);
  const POWER = [
    ["import_price_per_kwh", S("Import price", "price", "#111827", { width: 2 })],
    ["export_price_per_kwh", S("Export price", "price", "#6b7280", { dash: [4, 3] })],
    ["pv_p10_kw", S("PV p10", "kW", "rgba(245,158,11,0.35)", { width: 0.5, show: true })],
    ["pv_p50_kw", S("PV forecast", "kW", "#f59e0b")],
    ["pv_p90_kw", S("PV p90", "kW", "rgba(245,158,11,0.35)", { width: 0.5 })],
    ["load_p10_kw", S("Load p10", "kW", "rgba(220,38,38,0.3)", { width: 0.5 })],
    ["load_p50_kw", S("Load forecast", "kW", "#dc2626")],
    ["load_p90_kw", S("Load p90", "kW", "rgba(220,38,38,0.3)", { width: 0.5 })],
    ["pv_measured_kw", S("PV measured", "kW", "#b45309", { width: 2.5 })],
    ["load_measured_kw", S("Load measured", "kW", "#7f1d1d", { width: 2.5 })],
    ["charge_kw", S("Charge (plan)", "kW", "#16a34a", { fill: "rgba(22,163,74,0.12)" })],
    ["discharge_kw", S("Discharge (plan)", "kW", "#0891b2", { fill: "rgba(8,145,178,0.12)" })],
    ["import_kw", S("Import (plan)", "kW", "#7c3aed")],
    ["export_kw", S("Export (plan)", "kW", "#db2777")],
    ["water_kw", S("Water (plan)", "kW", "#0ea5e9", { dash: [2, 2] })],
    ["ev_kw", S("EV (plan)", "kW", "#65a30d", { dash: [2, 2] })],
  ];
  const SOC = [
    ["soc_planned_pct", { label: "SoC planned", scale: "%", stroke: "#16a34a", width: 2 }],
    ["soc_target_pct", S("SoC target", "%", "#a855f7", { dash: [5, 4] })],
    ["soc_measured_pct", { label: "SoC measured", scale: "%", stroke: "#111827", width: 2.5, points: { show: false } }],
  ];

  function tooltipPlugin() {
    let tip;
    return {
      hooks: {
        init: (u) => { tip = document.createElement("div"); tip.className = "tip"; tip.hidden = true; u.over.appendChild(tip); },
        setCursor: (u) => {
          const { left, top, idx } = u.cursor;
          if (idx == null || left < 0) { tip.hidden = true; return; }
          const rows = [];
          u.series.forEach((s, i) => {
            if (i === 0 || !s.show) return;
            const v = u.data[i][idx];
            if (v == null) return;
            const unit = s.scale === "price" ? ` ${CUR}/kWh` : s.scale === "%" ? " %" : " kW";
            rows.push(`<span style="color:${typeof s.stroke === "function" ? s.stroke(u, i) : s.stroke}">■</span> ${esc(s.label)}: ${fmt(v, s.scale === "price" ? 3 : 2)}${unit}`);
          });
          if (!rows.length) { tip.hidden = true; return; }
          tip.innerHTML = `<b>${esc(localTime(u.data[0][idx] * 1000))}</b><br>` + rows.join("<br>");
          tip.hidden = false;
          // never on top of the point: beside the cursor, on the side with room, above it when near the bottom
          const w = tip.offsetWidth, h = tip.offsetHeight, W = u.over.clientWidth, H = u.over.clientHeight;
          const x = left + 16 + w > W ? left - 16 - w : left + 16;
          const y = Math.max(0, Math.min(top - h / 2, H - h));
          tip.style.left = Math.max(0, x) + "px";
          tip.style.top = (left + 16 + w > W && x < 0 ? Math.max(0, top - h - 16) : y) + "px";
        },
      },
    };
  }
  function nowLinePlugin() {
    return {
      hooks: {
        draw: (u) => {
          if (!state.chartData) return;
          const x = u.valToPos(state.chartData.now, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          const c = u.ctx; c.save(); c.strokeStyle = "#9333ea"; c.lineWidth = 2 * devicePixelRatio; c.setLineDash([]);
          c.beginPath(); c.moveTo(x, u.bbox.top); c.lineTo(x, u.bbox.top + u.bbox.height); c.stroke();
          c.fillStyle = "#9333ea"; c.font = `${11 * devicePixelRatio}px sans-serif`; c.fillText("now", x + 4, u.bbox.top + 12 * devicePixelRatio);
          c.restore();
        },
      },
    };
  }
  function setRange(min, max) {
    const d = state.chartData; if (!d) return;
    const lo = d.x[0], hi = d.x[d.x.length - 1], span = Math.max(max - min, 3600);
    min = Math.max(lo, Math.min(min, hi - span)); max = Math.min(hi, min + span);
    state.charts.forEach((u) => u.setScale("x", { min, max }));
  }
  function zoomBy(factor, center) {
    const u = state.charts[0]; if (!u) return;
    const { min, max } = u.scales.x;
    const c = center === undefined ? (min + max) / 2 : center;
    setRange(c - (c - min) * factor, c + (max - c) * factor);
  }
  state.zoomBy = zoomBy;
  function gesturesPlugin() {
    return {
      hooks: {
        ready: (u) => {
          u.over.addEventListener("wheel", (e) => {
            e.preventDefault();
            zoomBy(e.deltaY < 0 ? 0.75 : 1 / 0.75, u.posToVal(e.offsetX, "x"));
          }, { passive: false });
          let pinch = null;
          const dist = (t) => Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY);
          u.over.addEventListener("touchstart", (e) => {
            if (e.touches.length !== 2) return;
            const r = u.over.getBoundingClientRect();
            pinch = { d: dist(e.touches), min: u.scales.x.min, max: u.scales.x.max,
              c: u.posToVal((e.touches[0].clientX + e.touches[1].clientX) / 2 - r.left, "x") };
          }, { passive: true });
          u.over.addEventListener("touchmove", (e) => {
            if (!pinch || e.touches.length !== 2) return;
            e.preventDefault();
            const f = pinch.d / Math.max(1, dist(e.touches));
            setRange(pinch.c - (pinch.c - pinch.min) * f, pinch.c + (pinch.max - pinch.c) * f);
          }, { passive: false });
          u.over.addEventListener("touchend", () => { pinch = null; });
        },
      },
    };
  }
  function makeChart(el, defs, height, axes, bands) {
    const width = el.clientWidth;
    const opts = {
      width, height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ),
      cursor: { sync: { key: "darkstar", setSeries: false }, drag: { x: true, y: false }, points: { size: 6 } },
      legend: { live: false },
      scales: { x: { time: true }, "%": { range: [0, 100] } },
      series: [{}, ...defs.map(([, s]) => Object.assign({}, s))],
      axes, bands,
      plugins: [tooltipPlugin(), nowLinePlugin(), gesturesPlugin()],
      hooks: { setScale: [(u, key) => {
        if (key !== "x" || state.syncing) return;
        state.syncing = true;
        state.charts.forEach((o) => { if (o !== u) o.setScale("x", { min: u.scales.x.min, max: u.scales.x.max }); });
        state.syncing = false;
        state.range = [u.scales.x.min, u.scales.x.max];
      }] },
    };
    return new uPlot(opts, [[]].concat(defs.map(() => [])), el);
  }
  const hourFmt = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const dayFmt = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, weekday: "short", day: "numeric" });
  const xAxis = { values: (u, splits) => splits.map((t) => { const hm = hourFmt.format(new Date(t * 1000)); return hm === "00:00" ? dayFmt.format(new Date(t * 1000)) : hm; }) };
  function columns(d, defs) { return [d.x, ...defs.map(([k]) => d.series[k])]; }
  async function loadChart(sinceEvent) {
    const started = performance.now();
    const d = await api("/api/chart");
    state.chartData = d;
    if (!state.charts.length) {
      const pIdx = (k) => 1 + POWER.findIndex(([n]) => n === k);
      const small = $("#chart-power").clientWidth < 600;
      state.charts.push(makeChart($("#chart-power"), POWER, small ? 300 : 360, [
        xAxis, { scale: "kW", label: "kW", size: 46 },
        { scale: "price", side: 1, label: `${CUR}/kWh`, grid: { show: false }, size: 52 },
      ], [
        { series: [pIdx("pv_p90_kw"), pIdx("pv_p10_kw")], fill: "rgba(245,158,11,0.15)" },
        { series: [pIdx("load_p90_kw"), pIdx("load_p10_kw")], fill: "rgba(220,38,38,0.10)" },
      ]));
      state.charts.push(makeChart($("#chart-soc"), SOC, small ? 150 : 170, [
        xAxis, { scale: "%", label: "SoC %", size: 46 },
        { scale: "%", side: 1, size: 52, label: "%", values: (u, splits) => splits.map(() => ""), grid: { show: false } },
      ], []));
      new ResizeObserver(debounce(() => state.charts.forEach((u) => u.setSize({ width: u.root.parentElement.clientWidth, height: u.height })), 100))
        .observe($("#chart-power"));
    }
    const first = !state.range;
    const keep = state.range;
    state.charts[0].setData(columns(d, POWER), !keep);
    state.charts[1].setData(columns(d, SOC), !keep);
    if (keep) setRange(keep[0], keep[1]);
    else if (first && $("#chart-power").clientWidth < 600) setRange(d.now - 6 * 3600, d.now + 18 * 3600);  // a phone starts on the next day
    state.lastChartMs = performance.now() - (sinceEvent || started);
    state.lastChartAt = performance.timeOrigin + performance.now();  // epoch ms, for the benchmark
    if (!state.firstChartMs) state.firstChartMs = performance.now();  // since navigation start
    state.chartVersion = (state.chartVersion || 0) + 1;
    state.planId = d.plan_id;
    (state.chartAtByPlan = state.chartAtByPlan || {})[d.plan_id] = state.chartAtByPlan[d.plan_id] || state.lastChartAt;
  }

  // ------------------------------------------------------------------ pages
  const pages = {
    overview() {
      $("#zoom-in").onclick = () => zoomBy(0.5);
      $("#zoom-out").onclick = () => zoomBy(2);
      $("#zoom-reset").onclick = () => { const d = state.chartData; state.range = null; setRange(d.x[0], d.x[d.x.length - 1]); state.range = null; };
      const chart = debounce((t) => loadChart(t).catch(console.warn), 50);  // prices+forecast+plan often come together
      const cards = debounce(() => loadOverview().catch(console.warn), 300);
      on("plan", (_d, t) => { chart(t); cards(); });
      on("forecast", (_d, t) => chart(t));
      on("prices", (_d, t) => { chart(t); cards(); });
      ["telemetry", "executor_state", "error", "context"].forEach((k) => on(k, cards));
      refreshAll = () => { loadChart(); loadOverview(); };
      return Promise.all([loadChart(), loadOverview()]);
    },
    control() {
      const showState = (o) => {
        const n = o.now;
        $("#ex-mode").textContent = (n.executor_mode || "unknown").replace(/_/g, " ");
        $("#ex-override").textContent = overrideText(n.override);
        showFlow(n.flow);
      };
      const refresh = debounce(async () => { const o = await loadOverview(); showState(o); }, 200);
      const fetchLog = async () => {
        const log = await api("/api/executor/log?hours=24");
        $("#exlog tbody").innerHTML = log.rows.map((r) => `<tr><td><span class="light ${r.success ? "ok" : "err"}" title="${r.success ? "ok" : esc(r.error || "failed")}"></span></td>` +
          `<td>${esc(localTime(r.ts))}</td><td>${esc(r.mode)}</td><td>${esc(r.planned_mode || "")}</td><td>${fmt(r.commanded_battery_kw)}</td>` +
          `<td>${fmt(r.measured_battery_kw)}</td><td>${r.measured_soc_frac == null ? "–" : fmt(100 * r.measured_soc_frac, 0) + " %"}</td>` +
          `<td>${esc(r.override_kind || "")}</td></tr>`).join("") || "<tr><td colspan=8>no writes yet</td></tr>";
      };
      const loadLog = debounce(fetchLog, 1000);
      const loadBlocks = async () => {
        const b = await api("/api/manual-blocks");
        $("#blocks").innerHTML = b.blocks.map((x) => `<li>${esc(x.action)}: ${esc(localTime(x.start))} → ${esc(localTime(x.end))}</li>`).join("") || "<li class=muted>none in the plan</li>";
      };
      const form = $("#quick");
      form.querySelectorAll("button[data-action]").forEach((btn) => btn.addEventListener("click", async () => {
        const action = btn.dataset.action, out = $("#action-result");
        const args = {};
        if (!["pause", "resume", "cancel"].includes(action)) {
          args.ttl_s = Number(form.ttl_s.value);
          if (form.power_kw.value) args.power_kw = Number(form.power_kw.value);
          if (action === "force_charge" && form.target_soc_pct.value) args.target_soc_frac = Number(form.target_soc_pct.value) / 100;
        }
        out.className = ""; out.textContent = "sending…";
        try {
          const r = await api(`/api/actions/${action}`, { method: "POST", json: args });
          out.className = "ok";
          out.textContent = `${action.replace("_", " ")}: done. ` + (r.override ? "Active until " + localTime(r.override.expires_at) + "." : r.paused ? "Paused." : "");
          refresh();
        } catch (e) { out.className = "err"; out.textContent = e.status === 401 ? "Refused: sign in as admin first." : `Refused: ${e.message}`; }
      }));
      const bf = $("#block");
      const toIso = (v) => { const d = new Date(v); return d.toISOString(); };  // the browser's local time, with offset
      bf.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const out = $("#block-result");
        try {
          await api("/api/manual-blocks", { method: "POST", json: { start: toIso(bf.start.value), end: toIso(bf.end.value), action: bf.action.value } });
          out.className = "ok"; out.textContent = "Block added; the planner replans.";
        } catch (e) { out.className = "err"; out.textContent = e.status === 401 ? "Refused: sign in as admin first." : `Refused: ${e.message}`; }
      });
      $("#clear-blocks").addEventListener("click", async () => {
        const out = $("#block-result");
        try { await api("/api/manual-blocks", { method: "DELETE" }); out.className = "ok"; out.textContent = "Blocks cleared; the planner replans."; }
        catch (e) { out.className = "err"; out.textContent = e.status === 401 ? "Refused: sign in as admin first." : `Refused: ${e.message}`; }
      });
      on("executor_state", refresh); on("telemetry", refresh); on("plan", loadBlocks); on("executor_state", loadLog);
      refreshAll = () => { refresh(); loadLog(); loadBlocks(); };
      return Promise.all([loadOverview().then(showState), fetchLog(), loadBlocks()]);
    },
    settings() {
      const form = $("#settings");
      if (!form) return Promise.resolve();
      const inputs = [...form.querySelectorAll("[name]")];
      const changes = () => Object.fromEntries(inputs.filter((i) => i.value !== i.dataset.initial).map((i) => [i.name, i.value]));
      const status = $("#settings-status");
      state.dirty = false;
      const showErrors = (errors) => {
        form.querySelectorAll(".field .error").forEach((e) => e.remove());
        for (const [path, why] of Object.entries(errors || {})) {
          const field = form.querySelector(`.field[data-path="${CSS.escape(path)}"]`) || form.querySelector(".field");
          const el = document.createElement("div"); el.className = "error"; el.textContent = field.dataset.path === path ? why : `${path}: ${why}`;
          field.appendChild(el);
        }
      };
      const check = debounce(async () => {
        const c = changes();
        state.dirty = Object.keys(c).length > 0;
        inputs.forEach((i) => i.closest(".field").classList.toggle("changed", i.value !== i.dataset.initial));
        $("#revert").disabled = !state.dirty;
        if (!state.dirty) { $("#save").disabled = true; showErrors({}); $("#diff-card").hidden = true; status.textContent = ""; return; }
        const r = await api("/api/settings/check", { method: "POST", json: { changes: c } });
        showErrors(r.errors);
        $("#save").disabled = !r.valid || !!form.dataset.readOnly;
        $("#diff-card").hidden = !r.diff; $("#diff").textContent = r.diff;
        status.className = r.valid ? "" : "err";
        status.textContent = !r.valid ? "Fix the marked values before saving." : form.dataset.readOnly
          ? `${Object.keys(c).length} change(s), valid; this file is read-only here (see above)` : `${Object.keys(c).length} change(s), valid; not saved yet`;
        state.checked = (state.checked || 0) + 1;
      }, 250);
      inputs.forEach((i) => i.addEventListener("input", check));
      $("#revert").addEventListener("click", () => { inputs.forEach((i) => { i.value = i.dataset.initial; }); check(); });
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        status.className = ""; status.textContent = "saving…";
        try {
          const r = await api("/api/settings", { method: "POST", json: { changes: changes() } });
          inputs.forEach((i) => { i.dataset.initial = i.value; });
          state.dirty = false; $("#save").disabled = true; $("#revert").disabled = true;
          inputs.forEach((i) => i.closest(".field").classList.remove("changed"));
          status.className = "ok";
          status.textContent = `Saved (backup ${r.backup}).` + (r.applied_to.length ? ` Applied to ${r.applied_to.join(", ")}` : "") +
            (r.replan ? (r.replan.status === "ok" ? "; replanned." : `; replan: ${r.replan.error}.`) : ".") +
            (r.restart_needed_for.length ? ` Restart needed for: ${r.restart_needed_for.join(", ")}.` : "");
          state.saved = r;
        } catch (e) {
          status.className = "err";
          if (e.status === 401 || e.status === 403) status.textContent = "Refused: sign in as admin first.";
          else status.textContent = `Not saved: ${e.message}`;
        }
      });
      window.addEventListener("beforeunload", (ev) => { if (state.dirty) { ev.preventDefault(); ev.returnValue = ""; } });
      return loadOverview();
    },
    forecast() {
      bindRetrain();
      const load = async () => {
        const m = await api("/api/models");
        const f = m.forecast_in_use;
        $("#fc-model").textContent = f ? f.model_id : "no forecast yet";
        $("#fc-notes").textContent = f ? (f.fallback ? "Fallback: " : "") + f.notes.join("; ") : "";
        $("#current").innerHTML = Object.entries(m.current).map(([k, r]) => `<dt>${esc(k)}</dt><dd>${r ? esc(r.model_id) +
          (r.metrics && r.metrics.score != null ? ` (score ${fmt(r.metrics.score, 4)})` : "") : "none approved"}</dd>`).join("");
        $("#models tbody").innerHTML = (m.models || []).map((r) => `<tr><td>${esc(localTime(r.created_at))}</td><td>${esc(r.kind)}</td>` +
          `<td>${esc(r.model_id)}</td><td>${r.score == null ? "–" : fmt(r.score, 4)}</td><td class="${r.approved ? "ok" : "err"}">${r.approved ? "yes" : "no"}</td>` +
          `<td>${esc((r.decision || "").slice(0, 120))}</td></tr>`).join("") || "<tr><td colspan=6>no models yet</td></tr>";
        $("#runs tbody").innerHTML = m.runs.map((r) => `<tr><td>${esc(localTime(r.updated_at))}</td><td>${esc(r.target)}</td>` +
          `<td>${esc(r.status)}</td><td>${esc(r.model_id || "")}</td><td>${esc((r.detail || "").slice(0, 120))}</td></tr>`).join("") || "<tr><td colspan=5>no runs yet</td></tr>";
      };
      const accuracy = async () => {
        const a = await api("/api/forecast/accuracy?days=7");
        const defs = [
          ["load_p10_kw", S("Load p10", "kW", "rgba(220,38,38,0.3)", { width: 0.5 })],
          ["load_p50_kw", S("Load forecast", "kW", "#dc2626")],
          ["load_p90_kw", S("Load p90", "kW", "rgba(220,38,38,0.3)", { width: 0.5 })],
          ["load_measured_kw", S("Load measured", "kW", "#7f1d1d", { width: 2 })],
          ["pv_p10_kw", S("PV p10", "kW", "rgba(245,158,11,0.35)", { width: 0.5 })],
          ["pv_p50_kw", S("PV forecast", "kW", "#f59e0b")],
          ["pv_p90_kw", S("PV p90", "kW", "rgba(245,158,11,0.35)", { width: 0.5 })],
          ["pv_measured_kw", S("PV measured", "kW", "#b45309", { width: 2 })],
        ];
        const el = $("#chart-accuracy");
        if (!state.accuracy) {
          state.accuracy = makeChart(el, defs, el.clientWidth < 600 ? 260 : 320, [xAxis, { scale: "kW", label: "kW", size: 46 }],
            [{ series: [3, 1], fill: "rgba(220,38,38,0.10)" }, { series: [7, 5], fill: "rgba(245,158,11,0.15)" }]);
        }
        state.accuracy.setData([a.x, ...defs.map(([k]) => a.series[k])]);
        $("#mae tbody").innerHTML = a.days.slice().reverse().map((d) => `<tr><td>${esc(d.day)}</td><td>${fmt(d.load_mae_kw, 3)}</td>` +
          `<td>${fmt(d.load_naive_mae_kw, 3)}</td><td>${fmt(d.pv_mae_kw, 3)}</td><td>${fmt(d.pv_naive_mae_kw, 3)}</td></tr>`).join("");
      };
      on("forecast", debounce(load, 500));
      return Promise.all([load(), accuracy(), loadOverview()]);
    },
    money() {
      const load = async () => {
        const m = await api("/api/money?days=31");
        $("#mtd-realized").textContent = money(m.month_to_date.realized);
        $("#mtd-nobattery").textContent = money(m.month_to_date.no_battery);
        $("#mtd-saving").textContent = money(m.month_to_date.saving);
        $("#mtd-regret").textContent = m.month_to_date.regret == null ? "not known (the oracle has not computed every day yet)" : money(m.month_to_date.regret);
        const keys = [["realized", "realized", "#2563eb"], ["no_battery", "no battery", "#9ca3af"], ["rule", "self-consumption rule", "#f59e0b"], ["oracle", "oracle", "#16a34a"]];
        const max = Math.max(0.01, ...m.days.flatMap((d) => keys.map(([k]) => Math.abs(d[k] || 0))));
        $("#bars").innerHTML = m.days.slice().reverse().map((d) => `<div class="day"><div class="dlabel">${esc(d.day)}` +
          `${d.saving != null ? ` <span class="muted">saving ${fmt(d.saving)} ${CUR}</span>` : ""}` +
          `${d.regret != null ? ` <span class="muted">· regret ${fmt(d.regret)} ${CUR}</span>` : ""}</div>` +
          keys.map(([k, label, color]) => d[k] == null ? "" : `<div class="bar"><span class="blabel">${label}</span>` +
            `<span class="btrack"><span class="bfill" style="${d[k] < 0 ? "right" : "left"}:50%;width:${(50 * Math.abs(d[k]) / max).toFixed(1)}%;background:${color}"></span></span>` +
            `<span class="bval">${fmt(d[k])}</span></div>`).join("") + "</div>").join("") || "<p class=muted>No measured days yet.</p>";
      };
      return Promise.all([load(), loadOverview()]);
    },
    lab() {
      const form = $("#lab"), status = $("#lab-status");
      const defs = [
        ["base_export", S("Export, baseline", "kW", "#9ca3af", { width: 2 })],
        ["step_export", S("Export, forced", "kW", "#2563eb", { width: 2 })],
        ["base_soc", S("SoC, baseline", "kWh", "#a78bfa", { paths: undefined, dash: [4, 3] })],
        ["step_soc", S("SoC, forced", "kWh", "#7c3aed", { paths: undefined })],
      ];
      const show = (r, i) => {
        const step = r.steps[i];
        $("#lab-chart-card").hidden = false;
        $("#lab-chart-title").textContent = `Baseline vs ${step.forced_slots} forced slot(s): ${step.cost_change >= 0 ? "+" : ""}${fmt(step.cost_change, 3)} ${r.currency}`;
        const x = r.slots.map((t) => Date.parse(t) / 1000);
        const el = $("#chart-lab");
        if (!state.labChart) {
          state.labChart = makeChart(el, defs, el.clientWidth < 600 ? 240 : 300,
            [xAxis, { scale: "kW", label: "kW", size: 46 }, { scale: "kWh", label: "kWh", side: 1, size: 46, grid: { show: false } }]);
          state.charts = state.charts.filter((c) => c !== state.labChart); // its own day, not synced with others
        }
        state.labChart.setData([x, r.baseline_flows.export_kw, step.flows.export_kw, r.baseline_flows.soc_kwh, step.flows.soc_kwh]);
        document.querySelectorAll("#lab-steps-table tbody tr").forEach((tr, k) => tr.classList.toggle("selected", k === i));
      };
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        $("#lab-run").disabled = true; status.className = ""; status.textContent = "planning the day…";
        const t0 = performance.now();
        try {
          const r = await api("/api/lab/export", { method: "POST", json: { day: $("#lab-day").value,
            steps: Number($("#lab-steps").value) || 6, relaxed: $("#lab-relaxed").checked } });
          state.lab = r;
          $("#lab-result").hidden = false;
          $("#lab-title").textContent = `${r.day}${r.from_local !== "00:00" ? ` from ${r.from_local}` : ""} (${r.source}${r.relaxed ? ", relaxed" : ""}): baseline ${fmt(r.baseline_cost, 3)} ${r.currency}, ` +
            `export ${fmt(r.baseline_export_kwh)} kWh; start ${fmt(r.soc_start_kwh)} kWh (${r.soc_start_from}), end ${fmt(r.baseline_soc_end_kwh)} kWh`;
          $("#lab-steps-table tbody").innerHTML = r.steps.map((s, i) => `<tr data-i="${i}" tabindex="0"><td>${s.forced_slots} <span class="muted">${esc(s.forced.slice(0, 4).join(" "))}${s.forced.length > 4 ? " …" : ""}</span></td>` +
            `<td>${fmt(s.target_export_kwh)}</td><td>${fmt(s.realized_export_forced_kwh)}</td><td>${fmt(s.export_kwh)}</td><td>${fmt(s.soc_end_kwh)}</td>` +
            `<td>${fmt(s.cost, 3)}</td><td class="${s.cost_change > 1e-6 ? "err" : "ok"}">${s.cost_change >= 0 ? "+" : ""}${fmt(s.cost_change, 3)}</td><td>${esc(s.status)}</td></tr>`).join("");
          document.querySelectorAll("#lab-steps-table tbody tr").forEach((tr) => {
            const pick = () => show(r, Number(tr.dataset.i));
            tr.addEventListener("click", pick); tr.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
          });
          show(r, r.steps.length - 1);
          status.className = "ok"; status.textContent = `${r.steps.length + 1} plans in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
        } catch (e) {
          status.className = "err"; status.textContent = `Not possible: ${e.message}`;
        } finally { $("#lab-run").disabled = false; }
      });
      return loadOverview();
    },
    admin() {
      bindRetrain();
      document.querySelectorAll("button[data-learning]").forEach((btn) => btn.addEventListener("click", async () => {
        const out = $("#retrain-result");
        if (!confirm(`${btn.textContent}? A backup is written first, then the learned models and their metrics are deleted.`)) return;
        out.className = ""; out.textContent = "backing up, then resetting…";
        try {
          const r = await api(`/api/admin/learning/${btn.dataset.learning}`, { method: "POST" });
          out.className = "ok"; out.textContent = `Done: ${r.models} models, ${r.training_runs} runs, ${r.files} files removed; backup ${r.backup}`;
          tables();
        } catch (e) { out.className = "err"; out.textContent = e.status === 401 ? "Refused: sign in as admin first." : `Refused: ${e.message}`; }
      }));
      const tables = async () => {
        const t = await api("/api/admin/tables");
        const bytes = (t.sizes && t.sizes.bytes) || {};
        const kb = (b) => b == null ? "" : ` · ${b >= 1048576 ? (b / 1048576).toFixed(1) + " MB" : (b / 1024).toFixed(0) + " kB"}`;
        $("#tables").innerHTML = Object.entries(t.rows).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v} rows${kb(bytes[k])}</dd>`).join("") +
          (t.sizes && t.sizes.total_bytes != null ? `<dt>total</dt><dd>${kb(t.sizes.total_bytes).slice(3)} <span class="muted">(${esc(t.sizes.method)})</span></dd>` : "");
      };
      const logs = async () => {
        try {
          const res = await fetch(BASE + "/api/admin/logs?lines=300", { headers: { "X-CSRF-Token": state.csrf } });
          if (res.ok) { const el = $("#log"); el.textContent = await res.text(); el.scrollTop = el.scrollHeight; }
        } catch (e) { console.warn(e); }
      };
      $("#log-refresh").onclick = logs;
      $("#log-download").onclick = async () => {
        const res = await fetch(BASE + "/api/admin/logs?lines=2000&download=true", { headers: { "X-CSRF-Token": state.csrf } });
        if (!res.ok) { $("#log").textContent = "Sign in as admin to read the log."; return; }
        const a = document.createElement("a"); a.href = URL.createObjectURL(await res.blob()); a.download = "darkstar.log"; a.click();
      };
      const live = debounce(() => state.csrf && logs(), 2000);
      on("error", live); on("plan", live);
      return Promise.all([tables(), state.csrf ? logs() : null, loadOverview()]);
    },
  };
  function bindRetrain() {
    document.querySelectorAll("button[data-retrain]").forEach((btn) => btn.addEventListener("click", async () => {
      const out = $("#retrain-result");
      out.className = ""; out.textContent = "asking…";
      try {
        await api(`/api/retrain/${btn.dataset.retrain}`, { method: "POST" });
        out.className = "ok"; out.textContent = `${btn.dataset.retrain}: retraining started; results appear under Training runs.`;
      } catch (e) { out.className = "err"; out.textContent = e.status === 401 ? "Refused: sign in as admin first." : `Refused: ${e.message}`; }
    }));
  }
  state.ready = (pages[body.dataset.page] ? pages[body.dataset.page]() : loadOverview())
    .then(() => { state.loaded = true; })
    .catch((e) => { console.warn("load failed", e); state.loadError = String(e); });
  connect();
})();
