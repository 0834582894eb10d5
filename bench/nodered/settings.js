/**
 * Node-RED settings for the gridwatch comparison (docs/benchmarks.md,
 * "gridwatch vs Mosquitto + Node-RED"). Everything the harness chooses per
 * run comes from the environment, so flows.json stays as committed:
 *
 *   PORT            editor / admin / http-in port (127.0.0.1 only)
 *   GW_MQTT_PORT    the Mosquitto the harness started (read by flows.json)
 *   GW_WEBHOOK_URL  the webhook sink (read by flows.json)
 *   GW_COMPOUND     compound.json: the rules' smoke threshold and, per
 *                   device, its household, address and whom to notify
 *
 * The rest is Node-RED's stock settings file with the defaults a production
 * install keeps (editor on, file flow storage, memory context).
 */
const fs = require("fs");

const compoundFile = process.env.GW_COMPOUND;
const compound = compoundFile
    ? JSON.parse(fs.readFileSync(compoundFile, "utf8"))
    : { rules: { smoke: { alarm: 0.15, alarm_flag: true } }, devices: {} };

module.exports = {
    flowFile: "flows.json",
    flowFilePretty: true,
    credentialSecret: false,

    uiHost: "127.0.0.1",
    uiPort: Number(process.env.PORT) || 1880,

    diagnostics: { enabled: true, ui: true },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },

    logging: {
        console: { level: "info", metrics: false, audit: false },
    },

    contextStorage: { default: { module: "memory" } },
    exportGlobalContextKeys: false,
    externalModules: {},
    editorTheme: { projects: { enabled: false }, tours: false },

    functionExternalModules: false,
    functionTimeout: 0,
    globalFunctionTimeout: 0,
    // The lookup table every alarm needs, loaded once; `bench` is the
    // harness's counter of readings the flow handled (read by GET /bench/stats).
    functionGlobalContext: {
        compound: compound,
        bench: { handled: 0, alarms: 0, mqtt: "starting" },
    },

    debugMaxLength: 1000,
    // Same per-request timeout as the gateway's webhook channel in the load config.
    httpRequestTimeout: 5000,
    mqttReconnectTime: 1000,
};
