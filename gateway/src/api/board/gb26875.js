// 查岗 (inspection) from the city fire monitoring centre: a banner with a
// countdown and the button 查岗应答, answered as the person chosen in
// "操作人". Self-contained beside app.js: it polls GET /api/v1/gb26875 every
// 2 s and stays hidden when no [gb26875] link is configured.
(() => {
  "use strict";
  let banner, text, btn, me = null, open = null, doneUntil = 0;
  const zh = () => !document.documentElement.lang || document.documentElement.lang.startsWith("zh");

  function build() {
    banner = document.createElement("div");
    banner.id = "gb-inspection";
    banner.setAttribute("role", "alert");
    banner.hidden = true;
    Object.assign(banner.style, {
      display: "flex", gap: "1em", alignItems: "center", justifyContent: "center",
      padding: "0.6em 1em", background: "#b71c1c", color: "#fff", fontSize: "1.2em", fontWeight: "bold",
    });
    text = document.createElement("span");
    text.id = "gb-inspection-text";
    btn = document.createElement("button");
    btn.id = "gb-answer";
    btn.className = "btn btn-primary";
    btn.textContent = "查岗应答";
    btn.addEventListener("click", answer);
    banner.append(text, btn);
    const app = document.getElementById("app");
    (app || document.body).prepend(banner);
  }

  function mmss(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function render() {
    const now = Date.now();
    if (now < doneUntil) return;
    if (!open || open.deadline <= now) {
      banner.hidden = true;
      return;
    }
    const left = mmss(open.deadline - now);
    text.textContent = zh()
      ? `消防远程监控中心查岗：请在 ${left} 内按“查岗应答”`
      : `Fire monitoring centre inspection (查岗): press 查岗应答 within ${left}`;
    btn.hidden = false;
    banner.hidden = false;
  }

  async function poll() {
    try {
      const r = await fetch("/api/v1/gb26875", { credentials: "same-origin" });
      if (!r.ok) { open = null; render(); return; }
      const s = await r.json();
      const now = Date.now();
      open = (s.inspections || []).find((i) => i.answered_at == null && i.deadline > now) || null;
      render();
    } catch (_) { /* offline for a moment: keep what is shown */ }
  }

  async function answer() {
    btn.disabled = true;
    try {
      if (!me) {
        const r = await fetch("/api/v1/me", { credentials: "same-origin" });
        if (r.ok) me = await r.json();
      }
      const acting = document.getElementById("acting-as");
      const by = (acting && acting.value) || (me && me.name) || "board";
      const headers = { "Content-Type": "application/json" };
      if (me && me.csrf) headers["X-CSRF-Token"] = me.csrf;
      const r = await fetch("/api/v1/gb26875/inspection/answer", {
        method: "POST", headers, credentials: "same-origin", body: JSON.stringify({ by }),
      });
      if (r.ok) {
        open = null;
        doneUntil = Date.now() + 5000;
        text.textContent = zh() ? "已应答，已报送监控中心" : "Answered; sent to the monitoring centre";
        btn.hidden = true;
        banner.dataset.answered = "1";
        setTimeout(() => { banner.hidden = true; }, 5000);
      } else {
        const e = await r.json().catch(() => ({}));
        text.textContent = `${zh() ? "应答失败" : "Answer failed"}: ${e.error || r.status}`;
      }
    } finally {
      btn.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    build();
    poll();
    setInterval(poll, 2000);
    setInterval(render, 1000);
  });
})();
