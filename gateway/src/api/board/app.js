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
    send_test: "发送测试", test_sending: "发送中…", test_confirmed: "已确认收到", test_refused: "被拒绝",
    test_not_configured: "未配置", test_failed: "测试失败",
    roles: { resident: "住户本人", grid_worker: "网格员", director: "社区书记", fire_brigade: "消防中队", family: "家属", neighbour: "邻居", operator: "网关运维" },
    channels: { sms: "短信", voice: "语音电话", email: "邮件", webhook: "平台推送", console: "控制台", mqtt: "MQTT", sounder: "联动报警器", upstream: "上级平台", gb26875: "消防远程监控中心" },
    delivery: { sent: "已送达", failed: "发送失败", pending: "发送中" },
    causes: { fire: "火灾", electrical_fault: "电气故障", cooking: "烹饪油烟", false_alarm: "误报", test: "测试", other: "其他" },
    dkinds: { smoke: "烟感", residual_current: "剩余电流", temperature: "温度", combo: "复合" },
    trends: { rise: "缓慢上升", step: "突变", rate_of_rise: "温升过快" },
    tab_history: "历史", speak: "播报", notify: "桌面通知", cat_all: "全部", cat_fire: "火警", cat_electrical: "电气", cat_health: "设备状态",
    since: "从", until: "到", search: "查询", export_csv: "导出 CSV", search_ph: "地址、设备、说明", what: "类型", handled_by: "处置 / 核查",
    close: "关闭", detail: "详情", silence: "消音联动", shelve: "搁置设备…", mute_alarm: "此警静音", unmute_alarm: "恢复声音",
    muted_until: "静音至", timeline: "处置记录", readings: "最近1小时读数", no_readings: "暂无读数（仅在内存中保留1小时）",
    done_silence: "已向联动报警器发送消音指令", done_shelve: "设备已搁置", shelve_for: "搁置时长", shelve_reason: "搁置原因（必填）",
    shelved_until: "已搁置至", shelf: "搁置", shelve_device: "搁置…", unshelve: "解除搁置", done_unshelve: "已解除搁置",
    shelve_refused: "搁置被拒绝", unshelve_refused: "解除搁置被拒绝",
    shelf_note: "搁置只暂缓本设备的设备状态类通知（故障、防拆、低电量、离线），报警照常记录和显示；烟感、温度、电气报警永不搁置，照常立即发出。到期自动解除，最长 7 天。",
    durations: { "2h": "2小时", "8h": "8小时", "24h": "24小时", "3d": "3天" }, no_building: "未标注楼栋", building_suffix: "幢", page: "页", total: "共", no_history: "没有符合条件的报警",
    notify_on: "桌面通知已开启", notify_denied: "浏览器拒绝了桌面通知",
    tl: { call: "电话", opened: "报警", escalated: "升级通知", repeat: "重复", cleared: "传感器恢复", acked: "确认", resolved: "处置完毕", verified: "核查关闭",
      reopened: "重新报警", reminder: "提醒", suppressed: "限流未发", silenced: "消音联动", shelved: "设备搁置，未派发", unshelved: "搁置结束，补发",
      delivery: "通知", audit: "操作" },
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
    send_test: "Send test", test_sending: "sending…", test_confirmed: "confirmed", test_refused: "refused",
    test_not_configured: "not configured", test_failed: "test failed",
    roles: { resident: "Resident", grid_worker: "Grid worker", director: "Director", fire_brigade: "Fire brigade", family: "Family", neighbour: "Neighbours", operator: "Gateway operator" },
    channels: { sms: "SMS", voice: "voice call", email: "email", webhook: "webhook", console: "console", mqtt: "MQTT", sounder: "linked sounders", upstream: "upstream", gb26875: "monitoring centre" },
    delivery: { sent: "delivered", failed: "FAILED", pending: "sending" },
    causes: { fire: "fire", electrical_fault: "electrical fault", cooking: "cooking", false_alarm: "false alarm", test: "test", other: "other" },
    dkinds: { smoke: "smoke", residual_current: "residual current", temperature: "temperature", combo: "combo" },
    trends: { rise: "slow rise", step: "sudden step", rate_of_rise: "rapid rise" },
    tab_history: "History", speak: "Speak", notify: "Notifications", cat_all: "All", cat_fire: "Fire", cat_electrical: "Electrical", cat_health: "Device health",
    since: "From", until: "To", search: "Search", export_csv: "Export CSV", search_ph: "address, device, note", what: "Kind", handled_by: "Resolved / verified",
    close: "Close", detail: "Details", silence: "Silence sounders", shelve: "Shelve device…", mute_alarm: "Mute this alarm", unmute_alarm: "Unmute",
    muted_until: "Muted until", timeline: "Timeline", readings: "Readings, last hour", no_readings: "No readings (kept in memory for one hour)",
    done_silence: "Silence sent to the linked sounders", done_shelve: "Device shelved", shelve_for: "For", shelve_reason: "Reason (required)",
    shelved_until: "Shelved until", shelf: "Shelf", shelve_device: "Shelve…", unshelve: "Lift shelf", done_unshelve: "Shelf lifted",
    shelve_refused: "Shelving refused", unshelve_refused: "Lifting refused",
    shelf_note: "A shelf holds back only this device's health notices (fault, tamper, low battery, offline); they are still recorded and shown. Smoke, temperature and electrical alarms are never shelved and go out at once. It ends by itself, after 7 days at most.",
    durations: { "2h": "2 h", "8h": "8 h", "24h": "24 h", "3d": "3 days" }, no_building: "no building", building_suffix: "", page: "page", total: "total", no_history: "No alarms match",
    notify_on: "Desktop notifications on", notify_denied: "The browser refused notifications",
    tl: { call: "call", opened: "opened", escalated: "escalated", repeat: "repeat", cleared: "sensor normal", acked: "acked", resolved: "resolved", verified: "verified",
      reopened: "reopened", reminder: "reminder", suppressed: "held back (rate limit)", silenced: "sounders silenced", shelved: "shelved, not dispatched",
      unshelved: "shelf ended, dispatched", delivery: "notification", audit: "action" },
  },
};
const ROLE_ORDER = ["resident", "fire_brigade", "grid_worker", "director", "operator", "family", "neighbour"];
const SEV_RANK = { critical: 3, alarm: 2, warning: 1, info: 0 };
// docs/duty-board.md categories: tabs, tones and the shelve rule (fire kinds are never shelved).
const CATEGORY = { smoke: "fire", fire_confirmed: "fire", temperature: "fire", residual_current: "electrical",
  device_fault: "health", low_battery: "health", tamper: "health", offline: "health", store_damaged: "health" };
const CAT_RANK = { fire: 3, electrical: 2, health: 1 };
const KIND_METRIC = { smoke: "smoke_db_m", residual_current: "residual_current_ma", temperature: "temperature_c", low_battery: "battery_pct" };
const METRIC_UNITS = { smoke_db_m: "dB/m", residual_current_ma: "mA", temperature_c: "°C", battery_pct: "%", rssi_dbm: "dBm" };

const state = {
  lang: localStorage.getItem("gw.lang") === "en" ? "en" : "zh",
  muteUntil: Number(localStorage.getItem("gw.muteUntil")) || 0,
  mutedAlarms: new Set(JSON.parse(localStorage.getItem("gw.mutedAlarms") || "[]")),
  speak: localStorage.getItem("gw.speak") === "1",
  cat: "all", plan: null, shelves: [], shelving: null, drawer: null, hist: { page: 1, total: 0 },
  me: null, labels: null, open: [], resolved: [], seen: null, fresh: new Set(),
  // Devices view: the device whose shelve form is open; the API's last refusal per device.
  shelvingDevice: null, shelfErrors: {},
  view: "alarms", source: null, refreshTimer: null, resolving: null, busy: new Set(),
  // 发送测试 per contact id: "sending", { answers } or { error }; kept across re-renders.
  tests: {},
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
  const cat = CATEGORY[a.kind];
  if (me.can_ack && cat === "fire" && a.state !== "verified") {
    out.push(h("button", { class: "btn", "data-action": "silence", disabled: busy, onclick: () => act(a, "silence", {}) }, T("silence")));
  }
  if (me.can_ack && cat === "health" && a.state.startsWith("active") && !shelfOf(a.device_id)) {
    out.push(h("button", { class: "btn", "data-action": "shelve", disabled: busy, onclick: () => { state.shelving = a.id; render(); } }, T("shelve")));
  }
  if (sounding(a, true)) {
    const m = state.mutedAlarms.has(a.id);
    out.push(h("button", { class: `btn btn-small${m ? " is-muted" : ""}`, "data-action": "mute-alarm", "aria-pressed": m ? "true" : "false",
      onclick: () => muteAlarm(a.id, !m) }, m ? T("unmute_alarm") : T("mute_alarm")));
  }
  out.push(h("button", { class: "btn btn-small", "data-action": "detail", onclick: () => openDrawer(a.id) }, T("detail")));
  return out;
}

function shelfOf(device) {
  return state.shelves.find((x) => x.device_id === device && x.until > Date.now());
}

// What an officer has typed into a shelve form (by device) survives live
// re-renders, like the resolve drafts below.
const shelfDrafts = new Map();

// The shelve form, on a health alarm's card and in a Devices row. The API's
// refusal is kept by device and shown beside the form's place, not only in a
// toast that fades.
function shelveForm(device, close) {
  const draft = shelfDrafts.get(device) || { for: "2h", reason: "" };
  shelfDrafts.set(device, draft);
  const dur = h("select", { name: "for", "aria-label": T("shelve_for"), onchange: (e) => { draft.for = e.target.value; } },
    Object.entries(T("durations")).map(([v, label]) => h("option", { value: v }, label)));
  dur.value = draft.for;
  const reason = h("input", { name: "reason", placeholder: T("shelve_reason"), maxlength: "500", required: true,
    oninput: (e) => { draft.reason = e.target.value; } });
  reason.value = draft.reason;
  return h("form", { class: "resolve-form shelve-form", "data-device-id": device, onsubmit: async (e) => {
    e.preventDefault();
    delete state.shelfErrors[device];
    try {
      await api("POST", `/api/v1/devices/${encodeURIComponent(device)}/shelve`, { by: byValue(), for: dur.value, reason: reason.value.trim() });
      shelfDrafts.delete(device);
      close();
      toast(T("done_shelve"));
    } catch (err) {
      if (err instanceof Unauthorized) return showLogin();
      state.shelfErrors[device] = `${T("shelve_refused")}: ${err.message}`;
      toast(state.shelfErrors[device], true);
    }
    await refresh();
  } }, h("label", {}, `${T("shelve_for")} `, dur), reason,
  h("button", { class: "btn btn-primary", type: "submit" }, T("submit")),
  h("button", { class: "btn", type: "button", onclick: () => { shelfDrafts.delete(device); delete state.shelfErrors[device]; close(); render(); } }, T("cancel")),
  h("p", { class: "meta shelf-note" }, T("shelf_note")));
}

async function unshelve(device) {
  delete state.shelfErrors[device];
  state.busy.add(`dev:${device}`);
  render();
  try {
    await api("DELETE", `/api/v1/devices/${encodeURIComponent(device)}/shelve`);
    toast(T("done_unshelve"));
  } catch (err) {
    if (err instanceof Unauthorized) return showLogin();
    state.shelfErrors[device] = `${T("unshelve_refused")}: ${err.message}`;
    toast(state.shelfErrors[device], true);
  } finally {
    state.busy.delete(`dev:${device}`);
  }
  await refresh();
}

// What an officer has typed into a resolve form survives live re-renders
// (a delivery answer arriving while the form is open re-draws the card).
const resolveDrafts = new Map();

function resolveForm(a) {
  const draft = resolveDrafts.get(a.id) || { cause: "fire", note: "" };
  resolveDrafts.set(a.id, draft);
  const sel = h("select", { name: "cause", "aria-label": T("cause"), onchange: (e) => { draft.cause = e.target.value; } },
    Object.entries(STR[state.lang].causes).map(([k, v]) => h("option", { value: k }, v)));
  sel.value = draft.cause;
  const note = h("input", { name: "note", placeholder: T("note"), maxlength: "500", oninput: (e) => { draft.note = e.target.value; } });
  note.value = draft.note;
  return h("form", { class: "resolve-form", onsubmit: (e) => {
    e.preventDefault();
    resolveDrafts.delete(a.id);
    state.resolving = null;
    act(a, "resolve", { cause: sel.value, note: note.value.trim() || undefined });
  } }, h("label", {}, `${T("cause")} `, sel), note,
  h("button", { class: "btn btn-primary", type: "submit" }, T("submit")),
  h("button", { class: "btn", type: "button", onclick: () => { resolveDrafts.delete(a.id); state.resolving = null; render(); } }, T("cancel")));
}

function alarmCard(a) {
  const opened = Date.parse(a.opened_at);
  const cls = ["alarm", `sev-${a.severity}`, a.state === "active_unacked" ? "unacked" : "", state.fresh.has(a.id) ? "fresh" : ""].join(" ");
  // A system alarm of the box itself (store_damaged): no home, a finding instead of a reading.
  const system = !a.household_id;
  const reading = system && a.kind === "store_damaged"
    ? h("div", { class: "reading" }, h("b", {}, state.lang === "zh"
      ? (a.value ? `已自动恢复 ${num(a.value)} 条告警，请检查` : "已自动修复，请检查")
      : (a.value ? `${num(a.value)} alarm records restored automatically; please check` : "repaired automatically; please check")))
    : a.value != null
    ? h("div", { class: "reading" }, `${T("reading")} `, h("b", {}, `${num(a.value)} ${a.unit}`),
      a.threshold != null ? h("span", { class: "thr" }, ` / ${T("threshold")} ${num(a.threshold)} ${a.unit}`) : "",
      trendText(a) ? h("span", { class: "trend" }, ` · ${trendText(a)}`) : "",
      a.peak != null && a.peak !== a.value ? h("span", { class: "thr" }, ` · ${T("peak")} ${num(a.peak)}`) : "")
    : null;
  const res = a.resolution;
  return h("article", { class: cls, id: `a-${a.id}`, "data-alarm-id": a.id, "data-state": a.state, "data-severity": a.severity, "data-cat": CATEGORY[a.kind] },
    h("div", { class: "head" },
      h("span", { class: "sev" }, sevLabel(a.severity)),
      h("span", { class: "kind" }, kindLabel(a.kind)),
      h("span", { class: "where" }, a.address || a.household_id || (state.lang === "zh" ? "网关" : "gateway box"), a.location ? h("small", {}, a.location) : ""),
      h("span", { class: "since", "data-opened": opened }, `${T("opened")} ${clock(opened)} · `, h("b", {}, `${age(opened)}${state.lang === "zh" ? "" : " "}${T("ago")}`))),
    h("div", { class: "facts" },
      reading,
      h("div", { class: "state" },
        h("span", { class: `pill ${a.state === "active_unacked" ? "unacked" : "acked"}` }, T(a.state)),
        h("span", { class: `pill ${a.condition}` }, T(a.condition)),
        a.count > 1 ? h("span", { class: "pill" }, `${a.count}${T("times")}`) : "",
        shelfOf(a.device_id) ? h("span", { class: "pill shelved" }, `${T("shelved_until")} ${clock(shelfOf(a.device_id).until)}`) : ""),
      system ? "" : residentsLine(a),
      res ? h("div", { class: "meta" }, `${T("resolved_by")}: ${STR[state.lang].causes[res.cause] ?? res.cause} · ${actorName(a, res.by)} ${clock(res.at)}${res.note ? ` · ${res.note}` : ""}`) : "",
      h("div", { class: "meta" }, `${a.device_id} · ${a.household?.grid_name ?? ""} · ${a.id}`)),
    rolesTable(a),
    state.resolving === a.id ? resolveForm(a) : state.shelving === a.id ? shelveForm(a.device_id, () => { state.shelving = null; }) : h("div", { class: "actions" }, actionButtons(a)));
}

function inCat(a) { return state.cat === "all" || CATEGORY[a.kind] === state.cat; }

function renderAlarms() {
  const box = $("#alarms");
  const open = sortAlarms(state.open.filter(inCat));
  for (const b of document.querySelectorAll("#cats .cat")) {
    const c = b.dataset.cat;
    const list = state.open.filter((a) => c === "all" || CATEGORY[a.kind] === c);
    b.querySelector(".n").textContent = list.length;
    b.classList.toggle("active", c === state.cat);
    b.classList.toggle("hot", list.some((a) => a.state === "active_unacked" && (a.severity === "critical" || a.severity === "alarm")));
  }
  renderPlan();
  box.replaceChildren(...(open.length ? open.map(alarmCard)
    : [h("div", { class: "empty" }, h("b", {}, "✓ "), T("no_alarms"))]));
  const resolved = sortAlarms(state.resolved.filter(inCat));
  $("#verify-title").hidden = !resolved.length;
  $("#resolved").replaceChildren(...resolved.map(alarmCard));
  const u = sortAlarms(urgent());
  const banner = $("#urgent");
  banner.hidden = !u.length;
  banner.replaceChildren(...u.map((a) => h("a", { href: `#a-${a.id}` },
    h("b", {}, `${sevLabel(a.severity)} · ${kindLabel(a.kind)}`), ` ${a.address} ${a.location} — ${T("active_unacked")}`)));
  const cnt = $("#count");
  cnt.textContent = state.open.length;
  cnt.classList.toggle("hot", state.open.some((a) => a.severity === "critical"));
}

// ---------- compound plan: alarming buildings highlighted, their homes listed ----------
const WORST = (list) => list.reduce((w, a) => (SEV_RANK[a.severity] > SEV_RANK[w] ? a.severity : w), "info");

async function loadPlan() {
  if (!state.me?.plan || state.plan) return;
  try {
    const r = await fetch("/board/plan.svg", { credentials: "same-origin" });
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName.toLowerCase() !== "svg" || doc.querySelector("parsererror")) return;
    svg.removeAttribute("width"); svg.removeAttribute("height");
    state.plan = document.importNode(svg, true);
    $("#plan-box").replaceChildren(state.plan);
    $("#plan-box").hidden = false;
    renderPlan();
  } catch (_) { /* the list below still names the buildings */ }
}

function renderPlan() {
  const byBuilding = new Map();
  for (const a of state.open) {
    const b = a.household?.building ?? "";
    if (!byBuilding.has(b)) byBuilding.set(b, []);
    byBuilding.get(b).push(a);
  }
  if (state.plan) {
    state.plan.querySelectorAll("[id^='building-']").forEach((el) => {
      const list = byBuilding.get(el.id.slice("building-".length)) || [];
      el.classList.toggle("hot", list.length > 0);
      if (list.length) el.setAttribute("data-severity", WORST(list)); else el.removeAttribute("data-severity");
    });
  }
  const names = [...byBuilding.keys()].sort((x, y) => SEV_RANK[WORST(byBuilding.get(y))] - SEV_RANK[WORST(byBuilding.get(x))] || x.localeCompare(y));
  $("#plan-list").replaceChildren(...names.map((b) => {
    const list = sortAlarms(byBuilding.get(b));
    const homes = [...new Map(list.map((a) => [a.household_id, a])).values()];
    return h("li", { "data-building": b, "data-severity": WORST(list) },
      h("b", {}, b ? `${b}${T("building_suffix")}` : T("no_building")), " ",
      homes.map((a, i) => [i ? "，" : "", h("a", { href: `#a-${a.id}` }, `${a.address} ${a.location}`), " ",
        h("span", { class: "meta" }, list.filter((x) => x.household_id === a.household_id).map((x) => kindLabel(x.kind)).join("、"))]));
  }));
  $("#site-plan").hidden = !state.plan && !names.length;
}

// ---------- history: closed alarms, filtered, paged, exported ----------
function historyParams(withPage) {
  const f = $("#history-form");
  const p = new URLSearchParams({ state: "closed" });
  for (const k of ["kind", "since", "until", "q"]) { const v = f.elements[k].value.trim(); if (v) p.set(k, v); }
  if (withPage) { p.set("page", state.hist.page); p.set("per_page", "20"); }
  return p;
}

function fillKinds() {
  const sel = $("#history-form").elements.kind;
  const keep = sel.value;
  const kinds = Object.keys(CATEGORY);
  sel.replaceChildren(h("option", { value: "" }, T("cat_all")),
    ...["fire", "electrical", "health"].map((c) => h("option", { value: c }, T(`cat_${c}`))),
    ...kinds.map((k) => h("option", { value: k }, `· ${kindLabel(k)}`)));
  sel.value = keep;
  $("#history-form").elements.q.placeholder = T("search_ph");
}

async function renderHistory() {
  const data = await api("GET", `/api/v1/alarms?${historyParams(true)}`);
  state.hist.total = data.total;
  $("#csv").href = `/api/v1/alarms?${historyParams(false)}&format=csv`;
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  $("#page-info").textContent = `${state.hist.page} / ${pages} ${T("page")} · ${T("total")} ${data.total}`;
  $("#prev").disabled = state.hist.page <= 1;
  $("#next").disabled = state.hist.page >= pages;
  const causes = STR[state.lang].causes;
  $("#history").replaceChildren(...(data.alarms.length ? data.alarms.map((a) => h("tr", { "data-alarm-id": a.id, "data-kind": a.kind, class: "clickable", onclick: () => openDrawer(a.id) },
    h("td", {}, clock(Date.parse(a.opened_at))),
    h("td", {}, h("span", { class: `sevdot sev-${a.severity}` }, "●"), ` ${sevLabel(a.severity)} ${kindLabel(a.kind)}`),
    h("td", {}, `${a.address} `, h("span", { class: "meta" }, a.location)),
    h("td", {}, T(a.state)),
    h("td", {}, a.resolution ? `${causes[a.resolution.cause] ?? a.resolution.cause}${a.resolution.note ? ` · ${a.resolution.note}` : ""}` : "–"),
    h("td", {}, a.resolution ? `${actorName(a, a.resolution.by)} ${clock(a.resolution.at)}` : "", a.verification ? h("div", { class: "meta" }, `${T("verified_by")}: ${a.verification.by} ${clock(a.verification.at)}`) : "")))
    : [h("tr", {}, h("td", { colspan: "6", class: "meta" }, T("no_history")))]));
}

// ---------- detail drawer: timeline and the readings that led to the alarm ----------
function tlText(e) {
  const tl = STR[state.lang].tl;
  if (e.what === "delivery") {
    // Broker events, forwarding and sounder commands are nobody's delivery: no name, no role.
    const machine = ["mqtt", "sounder", "upstream"].includes(e.channel);
    const who = e.recipient && !machine ? `${e.recipient.name} (${roleLabel(e.recipient.role)})` : "";
    const ch = STR[state.lang].channels[e.channel] ?? e.channel;
    return [`${tl.delivery} ${e.event ?? ""} → ${who ? `${who} · ` : ""}${ch} `,
      h("span", { class: `st-${e.status}` }, STR[state.lang].delivery[e.status] ?? e.status), e.error ? h("span", { class: "meta" }, ` ${e.error}`) : ""];
  }
  if (e.what === "audit") { const x = e.audit; return `${tl.audit} ${x.action} · ${x.by ?? ""} (${x.via}) · ${x.outcome}`; }
  return [h("b", {}, tl[e.what] ?? e.what), e.by ? ` · ${e.by}` : "", e.role ? ` (${roleLabel(e.role)})` : "", e.detail ? h("span", { class: "meta" }, ` ${e.detail}`) : ""];
}

function chart(a, points) {
  const metric = KIND_METRIC[a.kind] ?? Object.keys(points[0]?.values ?? {})[0];
  const pts = points.filter((p) => p.values[metric] != null).map((p) => [p.ts, p.values[metric]]);
  if (!metric || !pts.length) return h("p", { class: "meta", id: "chart-empty" }, T("no_readings"));
  const NS = "http://www.w3.org/2000/svg";
  const W = 320, H = 120, P = 6;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  if (a.threshold != null) ys.push(a.threshold);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const X = (t) => P + (W - 2 * P) * (t - x0) / (x1 - x0), Y = (v) => H - P - (H - 2 * P) * (v - y0) / ((y1 - y0) || 1);
  const svg = document.createElementNS(NS, "svg");
  const el = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("id", "chart");
  svg.setAttribute("data-metric", metric);
  svg.setAttribute("data-points", String(pts.length));
  svg.setAttribute("data-values", pts.map((p) => p[1]).join(","));
  if (a.threshold != null) el("line", { x1: P, x2: W - P, y1: Y(a.threshold), y2: Y(a.threshold), class: "thr-line" });
  el("polyline", { points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "), class: "line" });
  for (const p of pts) el("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.2, class: "dot" });
  const unit = METRIC_UNITS[metric] ?? "";
  return h("figure", { class: "chart" }, svg,
    h("figcaption", { class: "meta" }, `${num(Math.min(...pts.map((p) => p[1])))} → ${num(Math.max(...pts.map((p) => p[1])))} ${unit}`,
      a.threshold != null ? ` · ${T("threshold")} ${num(a.threshold)} ${unit}` : "", ` · ${clock(x0)} – ${clock(x1)}`));
}

async function openDrawer(id) {
  state.drawer = id;
  const d = $("#drawer");
  d.hidden = false;
  try {
    const a = await api("GET", `/api/v1/alarms/${encodeURIComponent(id)}`);
    let points = [];
    try { points = (await api("GET", `/api/v1/devices/${encodeURIComponent(a.device_id)}/readings?since=1h`)).readings; } catch (_) { /* device left the registry */ }
    if (state.drawer !== id) return;
    d.dataset.alarmId = id;
    $("#drawer-body").replaceChildren(
      h("h2", {}, `${sevLabel(a.severity)} ${kindLabel(a.kind)}`),
      h("p", { class: "where" }, a.address, a.location ? h("small", {}, a.location) : ""),
      h("p", { class: "meta" }, `${a.device_id} · ${T(a.state)} · ${a.id}`),
      h("h3", {}, T("readings")), chart(a, points),
      h("h3", {}, T("timeline")),
      h("ol", { id: "timeline", class: "timeline" }, (a.timeline || []).map((e) => {
        const at = e.what === "audit" ? e.audit.at : e.at;
        return h("li", { "data-what": e.what, "data-channel": e.channel ?? null }, h("time", {}, clock(at)), " ", tlText(e));
      })));
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    toast(e.message, true);
  }
}

function closeDrawer() { state.drawer = null; $("#drawer").hidden = true; }

// ---------- devices and households ----------
// The shelf cell of a device row: whether it is shelved (until, by whom,
// why), 搁置 / 解除搁置 for the roles the API lets act, the form, the refusal.
function shelfCell(d) {
  const sh = shelfOf(d.id);
  const can = state.me?.can_shelve;
  const busy = state.busy.has(`dev:${d.id}`);
  const err = state.shelfErrors[d.id];
  return h("td", { class: "shelf-cell" },
    sh ? [h("span", { class: "pill shelved" }, `${T("shelved_until")} ${clock(sh.until)}`),
      h("div", { class: "meta shelf-who" }, `${actorName({}, sh.by)} · ${sh.reason}`)] : "",
    state.shelvingDevice === d.id ? shelveForm(d.id, () => { state.shelvingDevice = null; })
      : can ? (sh
        ? h("button", { class: "btn btn-small", "data-action": "unshelve", disabled: busy, onclick: () => unshelve(d.id) }, T("unshelve"))
        : h("button", { class: "btn btn-small", "data-action": "shelve-device", disabled: busy,
          onclick: () => { state.shelvingDevice = d.id; delete state.shelfErrors[d.id]; render(); } }, T("shelve_device")))
        : "",
    err ? h("p", { class: "error shelf-error", role: "alert" }, err) : "");
}

async function renderDevices() {
  const [{ devices }, { shelves }] = await Promise.all([api("GET", "/api/v1/devices"), api("GET", "/api/v1/shelves")]);
  state.shelves = shelves;
  const dk = STR[state.lang].dkinds;
  // A redraw (live change, 10 s tick) must not take the cursor out of the shelve form.
  const focused = document.activeElement?.closest?.("#devices .shelve-form") ? document.activeElement.name : null;
  $("#devices").replaceChildren(...devices.map((d) => {
    const vals = Object.entries(d.values || {}).filter(([k]) => k !== "battery_pct" && k !== "rssi_dbm")
      .map(([k, v]) => `${num(v)} ${METRIC_UNITS[k] ?? ""}`).join(" · ");
    const bat = d.values?.battery_pct;
    return h("tr", { "data-device-id": d.id, "data-shelved": shelfOf(d.id) ? "yes" : "no" },
      h("td", {}, h("b", {}, dk[d.kind] ?? d.kind), h("div", { class: "meta" }, d.id)),
      h("td", {}, `${d.address ?? d.household_id} `, h("span", { class: "meta" }, d.location)),
      h("td", { class: d.online ? "on" : "off" }, d.online ? `● ${T("online")}` : `○ ${T("offline")}`),
      h("td", {}, vals || "–", (d.flags || []).length ? h("div", { class: "meta" }, d.flags.join(", ")) : ""),
      h("td", { class: bat != null && bat < 20 ? "low" : "" }, bat != null ? `${num(bat)}%` : "–"),
      h("td", {}, d.last_seen ? `${age(Date.parse(d.last_seen))} ${T("ago")}` : T("never")),
      shelfCell(d));
  }));
  const again = focused && $(`#devices .shelve-form [name='${focused}']`);
  if (again) { again.focus(); if (again.tagName === "INPUT") again.setSelectionRange(again.value.length, again.value.length); }
}

// 发送测试: a director or operator sends a marked test message to one contact
// through the daemon's real channels and sees each receiver's answer.
function canSendTest() { return ["director", "operator"].includes(state.me?.role); }

async function sendTest(id) {
  state.tests[id] = "sending";
  renderView();
  try {
    const r = await api("POST", `/api/v1/contacts/${encodeURIComponent(id)}/test`, {});
    state.tests[id] = { answers: r.answers || [] };
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    state.tests[id] = { error: e.message };
  }
  renderView();
}

function testResults(id) {
  const t = state.tests[id];
  if (!t) return "";
  if (t === "sending") return h("span", { class: "test-result pending" }, T("test_sending"));
  if (t.error) return h("span", { class: "test-result refused", "data-outcome": "error" }, `${T("test_failed")}: ${t.error}`);
  return t.answers.map((a) => h("span", {
    class: `test-result ${a.outcome}`, "data-channel": a.channel, "data-outcome": a.outcome, title: a.reason || "",
  }, `${STR[state.lang].channels[a.channel] ?? a.channel} `,
  a.outcome === "confirmed" ? `✓ ${T("test_confirmed")}`
    : a.outcome === "refused" ? `✗ ${T("test_refused")}${a.code ? ` [${a.code}]` : ""}${a.reason ? `：${a.reason}` : ""}`
      : T("test_not_configured")));
}

function contactLine(c) {
  const parts = [c.name, c.phone ? [" ", h("a", { href: `tel:${c.phone}` }, c.phone)] : ""];
  if (canSendTest()) {
    parts.push(" ", h("span", { class: "test-send", "data-contact-id": c.id },
      h("button", { class: "btn btn-small", "data-action": "send-test", disabled: state.tests[c.id] === "sending",
        onclick: () => sendTest(c.id) }, T("send_test")), " ", testResults(c.id)));
  }
  return parts;
}

async function renderHouseholds() {
  const { households } = await api("GET", "/api/v1/households");
  const people = (list) => (list || []).map(contactLine).map((x, i) => [i ? "，" : "", x]);
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

// ---------- attention: tones per category, speech, desktop notifications, title flash ----------
let audio = null;
function muted() { return Date.now() < state.muteUntil; }

// Distinct patterns a duty officer learns to tell apart without looking:
// fire = fast high square-wave triple, electrical = two long sawtooth pulses,
// device health = one soft low sine.
const TONES = {
  fire: { type: "square", notes: [880, 660, 880], on: 0.25, gap: 0.3 },
  electrical: { type: "sawtooth", notes: [520, 520], on: 0.45, gap: 0.6 },
  health: { type: "sine", notes: [440], on: 0.3, gap: 0.4 },
};

function tone(cat) {
  if (muted()) return;
  const t = TONES[cat] || TONES.fire;
  document.body.dataset.lastTone = cat;
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") { $("#sound-banner").hidden = false; audio.resume().catch(() => {}); return; }
    const t0 = audio.currentTime;
    t.notes.forEach((f, i) => {
      const o = audio.createOscillator(), g = audio.createGain();
      const at = t0 + i * t.gap;
      o.type = t.type;
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, at);
      g.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, at + t.on);
      o.connect(g).connect(audio.destination);
      o.start(at);
      o.stop(at + t.on + 0.02);
    });
  } catch (_) { /* no audio device: the title and colours still shout */ }
}

// An alarm that keeps sounding until acknowledged: critical and alarm severities.
function sounding(a, ignoreMute) {
  return a.state === "active_unacked" && (a.severity === "critical" || a.severity === "alarm") && (ignoreMute || !state.mutedAlarms.has(a.id));
}

function loudestCat(list) {
  return list.map((a) => CATEGORY[a.kind] || "fire").sort((x, y) => CAT_RANK[y] - CAT_RANK[x])[0];
}

function muteAlarm(id, on) {
  if (on) state.mutedAlarms.add(id); else state.mutedAlarms.delete(id);
  localStorage.setItem("gw.mutedAlarms", JSON.stringify([...state.mutedAlarms]));
  render();
}

function say(a) {
  if (!state.speak || muted() || !window.speechSynthesis || typeof SpeechSynthesisUtterance === "undefined") return;
  const u = new SpeechSynthesisUtterance(`${a.address}${a.location ? ` ${a.location}` : ""} ${kindLabel(a.kind)}`);
  u.lang = state.lang === "zh" ? "zh-CN" : "en-GB";
  window.speechSynthesis.speak(u);
}

function desktopNotice(a) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(`${sevLabel(a.severity)} ${kindLabel(a.kind)}`, { body: `${a.address} ${a.location}`, tag: a.id, requireInteraction: a.severity === "critical" });
    n.onclick = () => { window.focus(); openDrawer(a.id); };
  } catch (_) { /* some browsers only allow notifications from a service worker */ }
}

function urgent() { return state.open.filter((a) => a.severity === "critical" && a.state === "active_unacked"); }

let flashOn = false;
setInterval(() => {
  const n = urgent().length;
  const base = `gridwatch ${T("board")}${state.me?.site?.name ? ` · ${state.me.site.name}` : ""}`;
  if (n) { flashOn = !flashOn; document.title = flashOn ? `■■■ ${sevLabel("critical")} ${kindLabel(urgent()[0].kind)} (${n}) ■■■` : `(${n}) ${base}`; }
  else document.title = state.open.length ? `(${state.open.length}) ${base}` : base;
}, 1000);
// Like a fire panel: keep sounding while an alarm is unacknowledged (unless muted, per alarm or for a while).
setInterval(() => {
  const loud = state.open.filter((a) => sounding(a));
  if (loud.length) tone(loudestCat(loud));
  if (state.muteUntil && !muted()) { state.muteUntil = 0; localStorage.removeItem("gw.muteUntil"); applyLang(); }
  else if (muted()) applyLang();
}, 10000);
setInterval(() => {
  document.querySelectorAll(".since[data-opened]").forEach((el) => {
    const b = el.querySelector("b");
    if (b) b.textContent = `${age(Number(el.dataset.opened))}${state.lang === "zh" ? "" : " "}${T("ago")}`;
  });
}, 5000);

function noticeNew(open) {
  const first = state.seen === null;
  state.seen = state.seen || new Set();
  const fresh = [];
  for (const a of open) {
    if (!state.seen.has(a.id)) {
      state.seen.add(a.id);
      if (!first) { state.fresh.add(a.id); setTimeout(() => state.fresh.delete(a.id), 8000); }
      if (a.state === "active_unacked") fresh.push(a);
    }
  }
  // Forget per-alarm mutes of alarms that are gone.
  const ids = new Set(open.map((a) => a.id));
  if ([...state.mutedAlarms].some((id) => !ids.has(id))) {
    state.mutedAlarms = new Set([...state.mutedAlarms].filter((id) => ids.has(id)));
    localStorage.setItem("gw.mutedAlarms", JSON.stringify([...state.mutedAlarms]));
  }
  if (!fresh.length) return;
  const loud = fresh.filter((a) => sounding(a));
  tone(loud.length ? loudestCat(loud) : "health");
  for (const a of sortAlarms(fresh)) {
    if (a.severity !== "info") { say(a); desktopNotice(a); }
  }
}

// ---------- loading ----------
async function refresh() {
  try {
    const [open, resolved, shelves] = await Promise.all([api("GET", "/api/v1/alarms?state=open"), api("GET", "/api/v1/alarms?state=resolved"),
      api("GET", "/api/v1/shelves")]);
    state.open = open.alarms;
    state.resolved = resolved.alarms;
    state.shelves = shelves.shelves;
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
  // Another officer shelved or lifted a device: the Devices view and the cards' pills follow.
  es.addEventListener("shelf", scheduleRefresh);
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
    else if (state.view === "history") await renderHistory();
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
  const on = muted();
  const until = new Date(state.muteUntil).toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false, hour: "2-digit", minute: "2-digit" });
  m.textContent = on ? `${T("muted_until")} ${until}` : T("mute");
  m.classList.toggle("is-muted", on);
  m.setAttribute("aria-pressed", on ? "true" : "false");
  $("#mute-for").hidden = on;
  $("#speak").setAttribute("aria-pressed", state.speak ? "true" : "false");
  $("#speak").classList.toggle("is-on", state.speak);
  $("#notify").hidden = !("Notification" in window) || Notification.permission === "granted";
  document.querySelectorAll("[data-ph]").forEach((el) => { el.placeholder = T(el.dataset.ph); });
  if (state.labels) fillKinds();
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
  // The store was found damaged since the daemon started: say so to whoever is on duty.
  const sd = $("#store-banner");
  sd.hidden = !state.me.store_damage;
  sd.textContent = state.me.store_damage ? `⚠ 数据存储曾损坏，请运维检查 / Store damage found: ${state.me.store_damage}` : "";
  applyLang();
  connect();
  loadPlan();
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
  // Muting is for a while (5–60 min), never forever; a second click unmutes.
  $("#mute").addEventListener("click", () => {
    state.muteUntil = muted() ? 0 : Date.now() + Number($("#mute-for").value) * 60_000;
    localStorage.setItem("gw.muteUntil", String(state.muteUntil));
    applyLang();
  });
  $("#speak").addEventListener("click", () => {
    state.speak = !state.speak;
    localStorage.setItem("gw.speak", state.speak ? "1" : "0");
    applyLang();
  });
  $("#notify").addEventListener("click", async () => {
    const p = await Notification.requestPermission();
    toast(p === "granted" ? T("notify_on") : T("notify_denied"), p !== "granted");
    applyLang();
  });
  document.querySelectorAll("#cats .cat").forEach((b) => b.addEventListener("click", () => { state.cat = b.dataset.cat; renderAlarms(); }));
  $("#history-form").addEventListener("submit", (e) => { e.preventDefault(); state.hist.page = 1; renderView(); });
  $("#prev").addEventListener("click", () => { state.hist.page = Math.max(1, state.hist.page - 1); renderView(); });
  $("#next").addEventListener("click", () => { state.hist.page += 1; renderView(); });
  $("#drawer-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
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
  setInterval(() => { if (state.me && state.view !== "alarms" && state.view !== "history") renderView(); }, 10000);
  applyLang();
  boot().catch((e) => toast(e.message, true));
});
