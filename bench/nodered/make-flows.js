// Generates flows.json: `node make-flows.js > flows.json`. The function
// bodies are kept here as readable JavaScript; the editor shows the same.
const threshold = `// The smoke rule of rules.toml [smoke] (docs/contract.md §4): the detector's own
// smoke_alarm flag, or smoke_db_m at or above the alarm threshold. A
// 'test' flag is the test button: never an alarm. Who to notify comes
// from compound.json (device -> household -> grid -> grid workers), one
// webhook POST per recipient, like gridwatch's routing for this load.
const bench = global.get("bench");
bench.handled++;
const r = msg.payload;
if (r === null || typeof r !== "object") {
    return null;
}
const flags = Array.isArray(r.flags) ? r.flags : [];
if (flags.includes("test")) {
    return null;
}
const rule = compound.rules.smoke;
const smoke = r.values ? r.values.smoke_db_m : undefined;
const flagged = rule.alarm_flag && flags.includes("smoke_alarm");
if (!flagged && !(typeof smoke === "number" && smoke >= rule.alarm)) {
    return null;
}
const deviceId = msg.topic.split("/")[1];
const dev = compound.devices[deviceId];
if (!dev) {
    node.warn("alarm from unknown device " + deviceId);
    return null;
}
// One alarm per device until it is handled: repeats within 10 min are dropped.
const open = context.get("open");
const now = Date.now();
const last = open.get(deviceId);
if (last !== undefined && now - last < 600000) {
    return null;
}
open.set(deviceId, now);
bench.alarms++;
const alarm = {
    id: deviceId + "-" + now,
    kind: "smoke",
    severity: "critical",
    device_id: deviceId,
    household_id: dev.household,
    address: dev.address,
    location: dev.location,
    ts: r.ts,
    opened_at: new Date(now).toISOString(),
    value: typeof smoke === "number" ? smoke : null,
    threshold: rule.alarm,
    unit: "dB/m"
};
const out = dev.notify.map(function (c) {
    const body = JSON.stringify({
        event: "alarm.raised",
        delivery_id: alarm.id + "-" + c.contact_id,
        alarm: alarm,
        recipient: c
    });
    return { topic: deviceId, body: body, payload: body, attempt: 0 };
});
return [out];`;

const thresholdInit = `// Per-device time of the last alarm raised (memory only).
context.set("open", new Map());`;

const thresholdPrelude = `const compound = global.get("compound");
`;

const retry = `// Connection refused, timeout or a 5xx/429: try again after a capped
// exponential backoff with jitter (0.1 s, 0.2 s ... 30 s, like gridwatch's
// sender), for ever; other 4xx are dropped with a warning.
if (msg.error === undefined && msg.statusCode !== undefined) {
    const s = Number(msg.statusCode);
    if (s >= 200 && s < 300) {
        return null;
    }
    if (s >= 400 && s < 500 && s !== 429) {
        node.warn("webhook answered " + s + ", dropped " + msg.topic);
        return null;
    }
}
msg.attempt = (msg.attempt || 0) + 1;
const base = Math.min(30000, 100 * Math.pow(2, Math.min(msg.attempt - 1, 16)));
msg.delay = Math.round(base * (0.8 + 0.4 * Math.random()));
msg.payload = msg.body;
delete msg.error;
delete msg.statusCode;
delete msg.headers;
delete msg.responseUrl;
return msg;`;

const stats = `const b = global.get("bench");
msg.payload = { handled: b.handled, alarms: b.alarms, mqtt: b.mqtt };
return msg;`;

const mqttStatus = `// The broker connection as the mqtt in node reports it (readiness for the harness).
global.get("bench").mqtt = msg.status.fill === "green" ? "connected" : (msg.status.text || "down");
return null;`;

const flows = [
  { id: "a1b2c3d4e5f60001", type: "tab", label: "gridwatch comparison: smoke threshold -> webhook", disabled: false, info: "What a Node-RED user would deploy instead of gridwatch for the load of docs/benchmarks.md: the shipped smoke rule, a lookup of whom to notify, one webhook POST per recipient, retries with backoff. Ports and URLs come from the environment (settings.js)." },
  { id: "a1b2c3d4e5f60002", type: "mqtt-broker", name: "mosquitto", broker: "127.0.0.1", port: "${GW_MQTT_PORT}", clientid: "nodered-gridwatch", autoConnect: true, usetls: false, protocolVersion: "4", keepalive: "60", cleansession: false, autoUnsubscribe: false, birthTopic: "", birthQos: "0", birthRetain: "false", birthPayload: "", birthMsg: {}, closeTopic: "", closeQos: "0", closeRetain: "false", closePayload: "", closeMsg: {}, willTopic: "", willQos: "0", willRetain: "false", willPayload: "", willMsg: {}, userProps: "", sessionExpiry: "" },
  { id: "a1b2c3d4e5f60003", type: "mqtt in", z: "a1b2c3d4e5f60001", name: "readings", topic: "sensors/+/reading", qos: "1", datatype: "json", broker: "a1b2c3d4e5f60002", nl: false, rap: true, rh: 0, inputs: 0, x: 110, y: 80, wires: [["a1b2c3d4e5f60004"]] },
  { id: "a1b2c3d4e5f60004", type: "function", z: "a1b2c3d4e5f60001", name: "smoke threshold -> alarm", func: thresholdPrelude + threshold, outputs: 1, timeout: 0, noerr: 0, initialize: thresholdInit, finalize: "", libs: [], x: 330, y: 80, wires: [["a1b2c3d4e5f60005"]] },
  { id: "a1b2c3d4e5f60005", type: "http request", z: "a1b2c3d4e5f60001", name: "POST webhook", method: "POST", ret: "txt", paytoqs: "ignore", url: "${GW_WEBHOOK_URL}", tls: "", persist: true, proxy: "", insecureHTTPParser: false, authType: "", senderr: true, headers: [{ keyType: "Content-Type", keyValue: "", valueType: "other", valueValue: "application/json" }], x: 570, y: 80, wires: [["a1b2c3d4e5f60007"]] },
  { id: "a1b2c3d4e5f60006", type: "catch", z: "a1b2c3d4e5f60001", name: "webhook failed", scope: ["a1b2c3d4e5f60005"], uncaught: false, x: 560, y: 160, wires: [["a1b2c3d4e5f60007"]] },
  { id: "a1b2c3d4e5f60007", type: "function", z: "a1b2c3d4e5f60001", name: "retry with backoff?", func: retry, outputs: 1, timeout: 0, noerr: 0, initialize: "", finalize: "", libs: [], x: 790, y: 120, wires: [["a1b2c3d4e5f60008"]] },
  { id: "a1b2c3d4e5f60008", type: "delay", z: "a1b2c3d4e5f60001", name: "backoff", pauseType: "delayv", timeout: "5", timeoutUnits: "seconds", rate: "1", nbRateUnits: "1", rateUnits: "second", randomFirst: "1", randomLast: "5", randomUnits: "seconds", drop: false, allowrate: false, outputs: 1, x: 800, y: 200, wires: [["a1b2c3d4e5f60005"]] },
  { id: "a1b2c3d4e5f60009", type: "status", z: "a1b2c3d4e5f60001", name: "broker connection", scope: ["a1b2c3d4e5f60003"], x: 120, y: 260, wires: [["a1b2c3d4e5f6000a"]] },
  { id: "a1b2c3d4e5f6000a", type: "function", z: "a1b2c3d4e5f60001", name: "remember connection", func: mqttStatus, outputs: 1, timeout: 0, noerr: 0, initialize: "", finalize: "", libs: [], x: 330, y: 260, wires: [[]] },
  { id: "a1b2c3d4e5f6000b", type: "http in", z: "a1b2c3d4e5f60001", name: "", url: "/bench/stats", method: "get", upload: false, swaggerDoc: "", x: 120, y: 320, wires: [["a1b2c3d4e5f6000c"]] },
  { id: "a1b2c3d4e5f6000c", type: "function", z: "a1b2c3d4e5f60001", name: "readings handled", func: stats, outputs: 1, timeout: 0, noerr: 0, initialize: "", finalize: "", libs: [], x: 330, y: 320, wires: [["a1b2c3d4e5f6000d"]] },
  { id: "a1b2c3d4e5f6000d", type: "http response", z: "a1b2c3d4e5f60001", name: "", statusCode: "", headers: {}, x: 530, y: 320, wires: [] }
];
process.stdout.write(JSON.stringify(flows, null, 4) + "\n");
