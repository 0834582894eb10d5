// gridwatch duty board. Plain JS, no build step, no outside requests: the
// page is served by the gateway itself and must work on an offline edge box.
//
// Data flow: GET /api/v1/me (role, CSRF token) → GET /api/v1/alarms → render;
// then an EventSource on /api/v1/events says *which* alarm changed and the
// board refetches the lists (the API stays the one truth; a client that fell
// behind gets a `resync` and refetches too). Every POST carries the session's
// CSRF token in X-CSRF-Token.
"use strict";

const STR = {
  zh: {
    board: "值班台", token_label: "访问令牌", login: "登录", login_hint: "令牌只输入一次：本机浏览器保留 12 小时的会话。",
    bad_token: "令牌无效", tab_alarms: "报警", tab_devices: "设备", tab_households: "住户", acting_as: "操作人",
    logout: "退出", mute: "静音", muted: "已静音", enable_sound: "点击此处启用报警声音",
    awaiting_verify: "已处理，待核查", no_alarms: "当前没有未处理的报警", all_clear: "一切正常",
    reading: "读数", threshold: "阈值", peak: "峰值", times: "次", firing: "仍在报警", cleared: "传感器已恢复",
    active_unacked: "未确认", active_acked: "已确认", resolved: "已处理", verified: "已核查",
    lives_alone: "独居", age: "岁", residents: "住户", no_residents: "未登记住户", role: "角色", notified: "通知",
    acked: "确认", not_acked: "未确认", ack: "确认接警", resolve: "处置完毕…", verify: "核查关闭",
    cause: "原因", note: "处置说明", submit: "提交", cancel: "取消", opened: "报警时间", ago: "前",
    s: "秒", m: "分", h: "小时", d: "天", device: "设备", where: "位置", state: "状态", last_reading: "最近读数",
    battery: "电量", last_seen: "最近上报", online: "在线", offline: "离线", never: "从未上报",
    family: "家属", grid_worker: "网格员", neighbours: "邻居", open_alarms: "未处理报警", devices: "设备",
    done_ack: "已确认", done_resolve: "已提交处置", done_verify: "已核查关闭", live_on: "实时连接", live_off: "连接中断，正在重连",
    me_token: "（令牌）", resolved_by: "处置", verified_by: "核查",
    roles: { grid_worker: "网格员", director: "社区书记", fire_brigade: "消防中队", family: "家属", neighbour: "邻居" },
    channels: { sms: "短信", email: "邮件", webhook: "平台推送", console: "控制台", mqtt: "MQTT", gb26875: "消防远程监控中心" },
    delivery: { sent: "已送达", failed: "发送失败", pending: "发送中" },
    causes: { fire: "火灾", electrical_fault: "电气故障", cooking: "烹饪油烟", false_alarm: "误报", test: "测试", other: "其他" },
    dkinds: { smoke: "烟感", residual_current: "剩余电流", temperature: "温度", combo: "复合" },
    trends: { rise: "缓慢上升", step: "突变", rate_of_rise: "温升过快" },
  },
  en: {
    board: "duty board", token_label: "Access token", login: "Log in", login_hint: "Enter the token once: this browser keeps a 12-hour session.",
    bad_token: "Invalid token", tab_alarms: "Alarms", tab_devices: "Devices", tab_households: "Homes", acting_as: "Acting as",
    logout: "Log out", mute: "Mute", muted: "Muted", enable_sound: "Click here to enable the alarm sound",
    awaiting_verify: "Resolved, awaiting verification", no_alarms: "No open alarms", all_clear: "All clear",
    reading: "Reading", threshold: "threshold", peak: "peak", times: "×", firing: "still firing", cleared: "sensor back to normal",
    active_unacked: "UNACKED", active_acked: "acked", resolved: "resolved", verified: "verified",
    lives_alone: "LIVES ALONE", age: "y", residents: "Residents", no_residents: "no residents registered", role: "Role", notified: "Notified",
    acked: "Ack", not_acked: "not acked", ack: "Acknowledge", resolve: "Resolve…", verify: "Verify & close",
    cause: "Cause", note: "What was done", submit: "Submit", cancel: "Cancel", opened: "Opened", ago: "ago",
    s: "s", m: "m", h: "h", d: "d", device: "Device", where: "Where", state: "State", last_reading: "Last reading",
    battery: "Battery", last_seen: "Last seen", online: "online", offline: "offline", never: "never",
    family: "Family", grid_worker: "Grid worker", neighbours: "Neighbours", open_alarms: "open alarms", devices: "Devices",
    done_ack: "Acknowledged", done_resolve: "Resolution recorded", done_verify: "Verified and closed", live_on: "live", live_off: "disconnected, reconnecting",
    me_token: " (token)", resolved_by: "Resolved", verified_by: "Verified",
    roles: { grid_worker: "Grid worker", director: "Director", fire_brigade: "Fire brigade", family: "Family", neighbour: "Neighbours" },
    channels: { sms: "SMS", email: "email", webhook: "webhook", console: "console", mqtt: "MQTT", gb26875: "monitoring centre" },
    delivery: { sent: "delivered", failed: "FAILED", pending: "sending" },
    causes: { fire: "fire", electrical_fault: "electrical fault", cooking: "cooking", false_alarm: "false alarm", test: "test", other: "other" },
    dkinds: { smoke: "smoke", residual_current: "residual current", temperature: "temperature", combo: "combo" },
    trends: { rise: "slow rise", step: "sudden step", rate_of_rise: "rapid rise" },
  },
};
const ROLE_ORDER = ["fire_brigade", "grid_worker", "director", "family", "neighbour"];
const SEV_RANK = { critical: 3, alarm: 2, warning: 1, info: 0 };
const METRIC_UNITS = { smoke_db_m: "dB/m", residual_current_ma: "mA", temperature_c: "°C", battery_pct: "%", rssi_dbm: "dBm" };

const state = {
  lang: localStorage.getItem("gw.lang") === "en" ? "en" : "zh",
  muted: localStorage.getItem("gw.muted") === "1",
  me: null, labels: null, open: [], resolved: [], seen: null, fresh: new Set(),
  view: "alarms", source: null, refreshTimer: null, resolving: null, busy: new Set(),
};
const T = (k) => STR[state.lang][k] ?? k;
const $ = (sel) => document.querySelector(sel);

// ---------- DOM helpers (text only: nothing from the API is parsed as HTML) ----------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

function toast(msg, bad) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = bad ? "toast bad" : "toast";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 6000 : 2500);
}

// ---------- API ----------
class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me && state.me.csrf) headers["X-CSRF-Token"] = state.me.csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) throw new Unauthorized();
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

// ---------- formatting ----------
function kindLabel(k) { return state.labels?.[state.lang]?.kind?.[k] ?? k; }
function sevLabel(s) { return state.labels?.[state.lang]?.severity?.[s] ?? s; }
function roleLabel(r) { return STR[state.lang].roles[r] ?? r; }
function num(v) { return v == null ? "–" : (Math.round(v * 1000) / 1000).toString(); }
// A rule window as people say it: 10分钟 / 10 min.
function span(secs) {
  const zh = state.lang === "zh";
  if (secs >= 3600 && secs % 3600 === 0) return `${secs / 3600}${zh ? "小时" : " h"}`;
  if (secs >= 60 && secs % 60 === 0) return `${secs / 60}${zh ? "分钟" : " min"}`;
  return `${num(secs)}${zh ? "秒" : " s"}`;
}
// What a trend-triggered alarm saw, where a threshold alarm shows its level:
// "10分钟内上升 120 mA（缓慢上升）" / "rose 120 mA within 10 min (slow rise)".
function trendText(a) {
  const t = a.trigger;
  const label = t && STR[state.lang].trends[t.rule];
  if (!label || t.delta == null || t.within_s == null) return null;
  const change = `${num(t.delta)} ${a.unit}`;
  if (state.lang === "zh") return `${span(t.within_s)}内${t.rule === "step" ? "突增" : "上升"} ${change}（${label}）`;
  return `${t.rule === "step" ? "jumped" : "rose"} ${change} within ${span(t.within_s)} (${label})`;
}
function clock(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  const t = d.toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
  return today ? t : `${d.toLocaleDateString(state.lang === "zh" ? "zh-CN" : "en-GB")} ${t}`;
}
function age(ms) {
  let s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return `${s}${T("s")}`;
  const m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m}${T("m")}${s}${T("s")}`;
  const hh = Math.floor(m / 60);
  if (hh < 48) return `${hh}${T("h")}${m % 60}${T("m")}`;
  return `${Math.floor(hh / 24)}${T("d")}`;
}

// ---------- alarms ----------
function sortAlarms(list) {
  return list.slice().sort((a, b) =>
    (SEV_RANK[b.severity] - SEV_RANK[a.severity]) || (Date.parse(a.opened_at) - Date.parse(b.opened_at)));
}

function actorName(a, by) {
  const row = (a.notified || []).find((n) => n.contact_id === by);
  if (row) return row.name;
  const opt = (state.me?.acting_as || []).find((c) => c.id === by);
  return opt ? opt.name : by;
}

function residentsLine(a) {
  const rs = a.household?.residents || [];
  if (!rs.length) return h("div", { class: "who" }, h("span", { class: "meta" }, T("no_residents")));
  return h("div", { class: "who" }, `${T("residents")}: `, rs.map((r, i) => [
    i ? "，" : "",
    h("b", {}, r.name),
    r.age != null ? h("span", { class: "age" }, ` ${r.age}${T("age")}`) : "",
    r.lives_alone ? h("span", { class: "alone" }, T("lives_alone")) : "",
    r.phone ? [" ", h("a", { href: `tel:${r.phone}` }, r.phone)] : "",
  ]));
}

function rolesTable(a) {
  const rows = new Map();
  for (const n of a.notified || []) {
    if (!rows.has(n.role)) rows.set(n.role, []);
    rows.get(n.role).push(n);
  }
  for (const k of a.acks || []) if (!rows.has(k.role)) rows.set(k.role, []);
  const roles = [...rows.keys()].sort((x, y) => ROLE_ORDER.indexOf(x) - ROLE_ORDER.indexOf(y));
  if (!roles.length) return h("div", { class: "meta" }, "—");
  return h("table", { class: "roles" },
    h("thead", {}, h("tr", {}, h("th", {}, T("role")), h("th", {}, T("notified")), h("th", {}, T("acked")))),
    h("tbody", {}, roles.map((role) => {
      const ack = (a.acks || []).find((k) => k.role === role);
      return h("tr", { "data-role": role, "data-acked": ack ? "yes" : "no" },
        h("td", { class: "role" }, roleLabel(role)),
        h("td", {}, rows.get(role).map((n) => h("span", { class: "dl", title: n.error || "" },
          `${n.name} `, h("span", { class: "ch" }, STR[state.lang].channels[n.channel] ?? n.channel), " ",
          h("span", { class: `st-${n.status}` }, n.status === "sent" ? "✓" : n.status === "failed" ? "✗" : "…", STR[state.lang].delivery[n.status] ?? n.status)))),
        h("td", {}, ack
          ? h("span", { class: "ack-yes" }, `✓ ${actorName(a, ack.by)} ${clock(ack.at)}`)
          : h("span", { class: "ack-no" }, T("not_acked"))));
    })));
}

function actionButtons(a) {
  const me = state.me;
  const busy = state.busy.has(a.id);
  const out = [];
  if (a.state === "active_unacked" || a.state === "active_acked") {
    const myRole = { duty_officer: "fire_brigade", grid_worker: "grid_worker", director: "director" }[me.role];
    const mine = (a.acks || []).some((k) => k.role === myRole || k.by === byValue());
    if (me.can_ack && !mine) out.push(h("button", { class: "btn btn-ack", "data-action": "ack", disabled: busy, onclick: () => act(a, "ack", {}) }, T("ack")));
    if (me.can_resolve) out.push(h("button", { class: "btn", "data-action": "resolve", disabled: busy, onclick: () => { state.resolving = a.id; render(); } }, T("resolve")));
  }
  if (a.state === "resolved" && me.can_verify) {
    out.push(h("button", { class: "btn btn-verify", "data-action": "verify", disabled: busy, onclick: () => act(a, "verify", {}) }, T("verify")));
  }
  return out;
}

function resolveForm(a) {
  const sel = h("select", { name: "cause", "aria-label": T("cause") },
    Object.entries(STR[state.lang].causes).map(([k, v]) => h("option", { value: k }, v)));
  const note = h("input", { name: "note", placeholder: T("note"), maxlength: "500" });
  return h("form", { class: "resolve-form", onsubmit: (e) => {
    e.preventDefault();
    state.resolving = null;
    act(a, "resolve", { cause: sel.value, note: note.value.trim() || undefined });
  } }, h("label", {}, `${T("cause")} `, sel), note,
  h("button", { class: "btn btn-primary", type: "submit" }, T("submit")),
  h("button", { class: "btn", type: "button", onclick: () => { state.resolving = null; render(); } }, T("cancel")));
}

function alarmCard(a) {
  const opened = Date.parse(a.opened_at);
  const cls = ["alarm", `sev-${a.severity}`, a.state === "active_unacked" ? "unacked" : "", state.fresh.has(a.id) ? "fresh" : ""].join(" ");
  const reading = a.value != null
    ? h("div", { class: "reading" }, `${T("reading")} `, h("b", {}, `${num(a.value)} ${a.unit}`),
      a.threshold != null ? h("span", { class: "thr" }, ` / ${T("threshold")} ${num(a.threshold)} ${a.unit}`) : "",
      trendText(a) ? h("span", { class: "trend" }, ` · ${trendText(a)}`) : "",
      a.peak != null && a.peak !== a.value ? h("span", { class: "thr" }, ` · ${T("peak")} ${num(a.peak)}`) : "")
    : null;
  const res = a.resolution;
  return h("article", { class: cls, id: `a-${a.id}`, "data-alarm-id": a.id, "data-state": a.state, "data-severity": a.severity },
    h("div", { class: "head" },
      h("span", { class: "sev" }, sevLabel(a.severity)),
      h("span", { class: "kind" }, kindLabel(a.kind)),
      h("span", { class: "where" }, a.address || a.household_id, a.location ? h("small", {}, a.location) : ""),
      h("span", { class: "since", "data-opened": opened }, `${T("opened")} ${clock(opened)} · `, h("b", {}, `${age(opened)}${state.lang === "zh" ? "" : " "}${T("ago")}`))),
    h("div", { class: "facts" },
      reading,
      h("div", { class: "state" },
        h("span", { class: `pill ${a.state === "active_unacked" ? "unacked" : "acked"}` }, T(a.state)),
        h("span", { class: `pill ${a.condition}` }, T(a.condition)),
        a.count > 1 ? h("span", { class: "pill" }, `${a.count}${T("times")}`) : ""),
      residentsLine(a),
      res ? h("div", { class: "meta" }, `${T("resolved_by")}: ${STR[state.lang].causes[res.cause] ?? res.cause} · ${actorName(a, res.by)} ${clock(res.at)}${res.note ? ` · ${res.note}` : ""}`) : "",
      h("div", { class: "meta" }, `${a.device_id} · ${a.household?.grid_name ?? ""} · ${a.id}`)),
    rolesTable(a),
    state.resolving === a.id ? resolveForm(a) : h("div", { class: "actions" }, actionButtons(a)));
}

function renderAlarms() {
  const box = $("#alarms");
  const open = sortAlarms(state.open);
  box.replaceChildren(...(open.length ? open.map(alarmCard)
    : [h("div", { class: "empty" }, h("b", {}, "✓ "), T("no_alarms"))]));
  const resolved = sortAlarms(state.resolved);
  $("#verify-title").hidden = !resolved.length;
  $("#resolved").replaceChildren(...resolved.map(alarmCard));
  const u = sortAlarms(urgent());
  const banner = $("#urgent");
  banner.hidden = !u.length;
  banner.replaceChildren(...u.map((a) => h("a", { href: `#a-${a.id}` },
    h("b", {}, `${sevLabel(a.severity)} · ${kindLabel(a.kind)}`), ` ${a.address} ${a.location} — ${T("active_unacked")}`)));
  const cnt = $("#count");
  cnt.textContent = open.length;
  cnt.classList.toggle("hot", open.some((a) => a.severity === "critical"));
}

// ---------- devices and households ----------
async function renderDevices() {
  const { devices } = await api("GET", "/api/v1/devices");
  const dk = STR[state.lang].dkinds;
  $("#devices").replaceChildren(...devices.map((d) => {
    const vals = Object.entries(d.values || {}).filter(([k]) => k !== "battery_pct" && k !== "rssi_dbm")
      .map(([k, v]) => `${num(v)} ${METRIC_UNITS[k] ?? ""}`).join(" · ");
    const bat = d.values?.battery_pct;
    return h("tr", { "data-device-id": d.id },
      h("td", {}, h("b", {}, dk[d.kind] ?? d.kind), h("div", { class: "meta" }, d.id)),
      h("td", {}, `${d.address ?? d.household_id} `, h("span", { class: "meta" }, d.location)),
      h("td", { class: d.online ? "on" : "off" }, d.online ? `● ${T("online")}` : `○ ${T("offline")}`),
      h("td", {}, vals || "–", (d.flags || []).length ? h("div", { class: "meta" }, d.flags.join(", ")) : ""),
      h("td", { class: bat != null && bat < 20 ? "low" : "" }, bat != null ? `${num(bat)}%` : "–"),
      h("td", {}, d.last_seen ? `${age(Date.parse(d.last_seen))} ${T("ago")}` : T("never")));
  }));
}

async function renderHouseholds() {
  const { households } = await api("GET", "/api/v1/households");
  const people = (list) => (list || []).map((c) => [c.name, c.phone ? [" ", h("a", { href: `tel:${c.phone}` }, c.phone)] : ""]).map((x, i) => [i ? "，" : "", x]);
  $("#households").replaceChildren(...households.map((x) => {
    const hh = x.household;
    return h("div", { class: `card${x.open_alarms ? " has-alarm" : ""}`, "data-household-id": hh.id },
      h("h3", {}, hh.address, " ", h("span", { class: "meta" }, hh.grid_name ?? hh.grid)),
      residentsLine({ household: hh }),
      x.family?.length ? h("p", {}, `${T("family")}: `, people(x.family)) : "",
      x.grid_workers?.length ? h("p", {}, `${T("grid_worker")}: `, people(x.grid_workers)) : "",
      x.neighbours?.length ? h("p", { class: "meta" }, `${T("neighbours")}: ${x.neighbours.map((n) => n.address).join("，")}`) : "",
      x.devices.length ? h("p", { class: "meta" }, `${T("devices")}: `, x.devices.map((d, i) => [i ? " · " : "",
        h("span", { class: d.online ? "on" : "off" }, d.online ? "●" : "○"), ` ${d.location} ${STR[state.lang].dkinds[d.kind] ?? d.kind}`,
        d.battery_pct != null ? ` ${num(d.battery_pct)}%` : ""])) : "",
      x.open_alarms ? h("p", { class: "ack-no" }, `${x.open_alarms} ${T("open_alarms")}`) : "");
  }));
}

// ---------- attention: sound, title flash ----------
let audio = null;
function beep() {
  if (state.muted) return;
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") { $("#sound-banner").hidden = false; audio.resume().catch(() => {}); return; }
    const t0 = audio.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.type = "square";
      o.frequency.value = i % 2 ? 660 : 880;
      g.gain.setValueAtTime(0.0001, t0 + i * 0.3);
      g.gain.exponentialRampToValueAtTime(0.25, t0 + i * 0.3 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.3 + 0.25);
      o.connect(g).connect(audio.destination);
      o.start(t0 + i * 0.3);
      o.stop(t0 + i * 0.3 + 0.27);
    }
  } catch (_) { /* no audio device: the title and colours still shout */ }
}

function urgent() { return state.open.filter((a) => a.severity === "critical" && a.state === "active_unacked"); }

let flashOn = false;
setInterval(() => {
  const n = urgent().length;
  const base = `gridwatch ${T("board")}${state.me?.site?.name ? ` · ${state.me.site.name}` : ""}`;
  if (n) { flashOn = !flashOn; document.title = flashOn ? `■■■ ${sevLabel("critical")} ${kindLabel(urgent()[0].kind)} (${n}) ■■■` : `(${n}) ${base}`; }
  else document.title = state.open.length ? `(${state.open.length}) ${base}` : base;
}, 1000);
// Like a fire panel: keep sounding while a critical alarm is unacknowledged.
setInterval(() => { if (urgent().length) beep(); }, 10000);
setInterval(() => {
  document.querySelectorAll(".since[data-opened]").forEach((el) => {
    const b = el.querySelector("b");
    if (b) b.textContent = `${age(Number(el.dataset.opened))}${state.lang === "zh" ? "" : " "}${T("ago")}`;
  });
}, 5000);

function noticeNew(open) {
  const first = state.seen === null;
  state.seen = state.seen || new Set();
  let loud = false;
  for (const a of open) {
    if (!state.seen.has(a.id)) {
      state.seen.add(a.id);
      if (!first) { state.fresh.add(a.id); setTimeout(() => state.fresh.delete(a.id), 8000); }
      if (a.severity === "critical" && a.state === "active_unacked") loud = true;
    }
  }
  if (loud) beep();
}

// ---------- loading ----------
async function refresh() {
  try {
    const [open, resolved] = await Promise.all([api("GET", "/api/v1/alarms?state=open"), api("GET", "/api/v1/alarms?state=resolved")]);
    state.open = open.alarms;
    state.resolved = resolved.alarms;
    noticeNew(state.open);
    if (state.view === "alarms") renderAlarms();
    else await renderView();
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    toast(e.message, true);
  }
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, 120);
}

function connect() {
  if (state.source) state.source.close();
  const es = new EventSource("/api/v1/events");
  state.source = es;
  const live = (on) => { const l = $("#live"); l.className = `live ${on ? "on" : "off"}`; l.title = T(on ? "live_on" : "live_off"); l.dataset.live = on ? "1" : "0"; };
  es.addEventListener("ready", () => { live(true); refresh(); });
  es.addEventListener("alarm", scheduleRefresh);
  es.addEventListener("resync", refresh);
  es.onerror = () => {
    live(false);
    // A closed stream (e.g. 401 after the session ended) is not retried by the browser.
    if (es.readyState === EventSource.CLOSED) setTimeout(() => boot().catch(() => {}), 3000);
  };
}

async function renderView() {
  try {
    if (state.view === "devices") await renderDevices();
    else if (state.view === "households") await renderHouseholds();
    else renderAlarms();
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    toast(e.message, true);
  }
}

function render() { renderView(); }

// ---------- actions ----------
function byValue() {
  const sel = $("#acting-as");
  return (sel && sel.value) || state.me.name;
}

async function act(a, action, extra) {
  state.busy.add(a.id);
  render();
  try {
    await api("POST", `/api/v1/alarms/${encodeURIComponent(a.id)}/${action}`, { by: byValue(), ...extra });
    toast(T(`done_${action}`));
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    toast(e.message, true);
  } finally {
    state.busy.delete(a.id);
    await refresh();
  }
}

// ---------- chrome: login, language, mute, tabs ----------
function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = T(el.dataset.t); });
  document.querySelectorAll(".lang-toggle").forEach((b) => { b.textContent = state.lang === "zh" ? "English" : "中文"; });
  const m = $("#mute");
  m.textContent = state.muted ? T("muted") : T("mute");
  m.classList.toggle("is-muted", state.muted);
  m.setAttribute("aria-pressed", state.muted ? "true" : "false");
  fillActingAs();
}

function fillActingAs() {
  const sel = $("#acting-as");
  if (!state.me) return;
  const key = `gw.by.${state.me.name}`;
  const want = localStorage.getItem(key) || state.me.name;
  const opts = [{ id: state.me.name, name: `${state.me.name}${T("me_token")}` }, ...(state.me.acting_as || [])];
  sel.replaceChildren(...opts.map((o) => h("option", { value: o.id }, o.name)));
  sel.value = opts.some((o) => o.id === want) ? want : state.me.name;
  sel.onchange = () => localStorage.setItem(key, sel.value);
  sel.closest(".acting").hidden = !(state.me.can_ack || state.me.can_resolve);
}

function showLogin() {
  if (state.source) { state.source.close(); state.source = null; }
  state.me = null;
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#token").focus();
}

async function boot() {
  try {
    const [me, labels] = await Promise.all([api("GET", "/api/v1/me"), state.labels ? state.labels : api("GET", "/board/labels.json")]);
    state.me = me;
    state.labels = labels;
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    throw e;
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#site-name").textContent = state.me.site?.name ?? "";
  document.body.dataset.role = state.me.role;
  applyLang();
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#login-error").textContent = "";
    try {
      const r = await fetch("/board/login", { method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin", body: JSON.stringify({ token: $("#token").value }) });
      if (!r.ok) { $("#login-error").textContent = T("bad_token"); return; }
      $("#token").value = "";
      // The click that logged in also unlocks audio for this page.
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      await boot();
    } catch (err) { $("#login-error").textContent = err.message; }
  });
  document.querySelectorAll(".lang-toggle").forEach((b) => b.addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("gw.lang", state.lang);
    applyLang();
    render();
  }));
  $("#mute").addEventListener("click", () => {
    state.muted = !state.muted;
    localStorage.setItem("gw.muted", state.muted ? "1" : "0");
    applyLang();
  });
  $("#sound-banner").addEventListener("click", () => {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    audio.resume().then(() => { $("#sound-banner").hidden = true; }).catch(() => {});
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/board/logout"); } catch (_) { /* the session may already be gone */ }
    showLogin();
  });
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
    state.view = b.dataset.view;
    document.querySelectorAll(".tab").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${state.view}`; });
    renderView();
  }));
  setInterval(() => { if (state.me && state.view !== "alarms") renderView(); }, 10000);
  applyLang();
  boot().catch((e) => toast(e.message, true));
});
