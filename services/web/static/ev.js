// EV cards of the Control page (templates/_ev.html, services/web/ev.py): state from /api/ev, live on
// context/telemetry events; departure + target as context, "charge now to X %" with a TTL, cancel.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const ds = window.darkstar;
  const cards = [...document.querySelectorAll("#evs .card.ev")];
  if (!ds || !cards.length) return;
  const TZ = document.body.dataset.tz || "UTC";
  const pct = (f) => (f === null || f === undefined ? "–" : `${Math.round(100 * f)} %`);
  const when = (iso) => new Date(iso).toLocaleString("en-GB", { timeZone: TZ, weekday: "short", hour: "2-digit", minute: "2-digit" });
  const refused = (e) => (e.status === 401 || e.status === 403 ? "Refused: sign in as admin first." : `Refused: ${e.message}`);

  function show(ev) {
    const card = cards.find((c) => c.dataset.ev === ev.name);
    if (!card) return;
    const f = (k, v) => { card.querySelector(`[data-f=${k}]`).textContent = v; };
    f("plugged", ev.plugged === null ? "not known" : ev.plugged ? "yes" : "no");
    f("soc", pct(ev.soc_frac));
    f("kw", ev.ev_kw === null ? "–" : `${Number(ev.ev_kw).toFixed(1)} kW`);
    f("departure", ev.departure ? when(ev.departure) : `${ev.departure_default || "–"} (daily)`);
    const q = ev.charge_now;  // the server judges expiry by the site's clock
    const kwh = ev.target_kwh === null ? "" : `, ${Number(ev.target_kwh).toFixed(1)} kWh to go`;
    f("target", q
      ? `charging now to ${pct(q.target_soc_frac)} until ${when(q.expires_at)}`
      : `${pct(ev.target_soc_frac)}${ev.target_from === "config" ? " (configured)" : ""}${kwh}`);
    const t = card.querySelector(".ev-settings [name=target_pct]");
    if (t && !t.value && ev.target_soc_frac !== null) t.value = Math.round(100 * ev.target_soc_frac);
  }
  async function load() { (await ds.api("/api/ev")).evs.forEach(show); }
  const soon = (() => { let t = null; return () => { clearTimeout(t); t = setTimeout(load, 300); }; })();
  for (const kind of ["context", "telemetry"]) (ds.handlers[kind] = ds.handlers[kind] || []).push(soon);

  for (const card of cards) {
    const name = card.dataset.ev, out = card.querySelector(".ev-result");
    const say = (cls, text) => { out.className = `ev-result ${cls}`; out.textContent = text; };
    const settings = card.querySelector(".ev-settings");
    if (settings) settings.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {};
      if (settings.departure.value) body.departure = settings.departure.value;
      if (settings.target_pct.value) body.target_soc_frac = Number(settings.target_pct.value) / 100;
      try {
        await ds.api(`/api/ev/${encodeURIComponent(name)}/settings`, { method: "POST", json: body });
        say("ok", "Set; the planner replans."); soon();
      } catch (err) { say("err", refused(err)); }
    });
    const charge = card.querySelector(".ev-charge");
    charge.querySelectorAll("button[data-ev-action]").forEach((btn) => btn.addEventListener("click", async () => {
      const action = btn.dataset.evAction;
      const json = action === "charge" ? { target_soc_frac: Number(charge.target_pct.value) / 100, ttl_s: Number(charge.ttl_s.value) } : undefined;
      say("", "sending…");
      try {
        const r = await ds.api(`/api/ev/${encodeURIComponent(name)}/${action}`, { method: "POST", json });
        say("ok", r.quick ? `Charging now to ${pct(r.quick.target_soc_frac)} until ${when(r.quick.expires_at)}.` : "Charge now cancelled; the plan drives the charger.");
        await load();
      } catch (err) { say("err", refused(err)); }
    }));
  }
  ds.evReady = load().then(() => { ds.evLoaded = true; }).catch((e) => { console.warn("EV load failed", e); ds.evError = String(e); });
});
