#!/usr/bin/env python3
"""Local stand-ins for the receivers gridwatch posts to, written from each
platform's public documentation (not from gridwatch's code), in another
language on purpose: each checks the request the way the platform does and
answers with the platform's own result shapes.

- DingTalk custom robot (钉钉自定义机器人), POST /dingtalk/robot/send?access_token=T
  加签: query timestamp (ms, within 1 hour) and sign =
  urlencode(base64(HmacSHA256(key=secret, msg=timestamp + "\\n" + secret)));
  keyword security: the text must contain a keyword; 20 messages a minute,
  then the robot is muted for 10 minutes. errcode 310000 for a bad sign or
  missing keyword, 130101 when sending too fast, 300001 unknown token.
- WeCom group robot (企业微信群机器人), POST /wecom/cgi-bin/webhook/send?key=K
  errcode 93000 for an unknown key, 45009 beyond 20 messages a minute;
  mentioned_mobile_list is only honoured in text messages.
- Feishu custom bot (飞书自定义机器人), POST /feishu/open-apis/bot/v2/hook/T
  签名校验: body timestamp (s, within 1 hour) and sign =
  base64(HmacSHA256(key=timestamp + "\\n" + secret, msg="")); code 19021 bad
  sign, 19024 keyword missing, 11232 frequency limited (100 a minute).
- Aliyun SendSms (RPC 2017-05-25), POST /aliyun/ form body: HMAC-SHA1 over
  "POST&%2F&" + percentEncode(sorted canonical query), key = secret + "&";
  Code "OK", SignatureDoesNotMatch (HTTP 400), isv.MOBILE_NUMBER_ILLEGAL,
  isv.TEMPLATE_MISSING_PARAMETERS, isv.PARAM_NOT_SUPPORT_URL.
- Tencent Cloud SendSms (2021-01-11), POST /tencent/ JSON with TC3-HMAC-SHA256:
  CanonicalRequest over the signed headers, scope date/sms/tc3_request;
  Response.Error AuthFailure.SignatureFailure, per-number SendStatusSet Code "Ok".
- Aliyun voice (Dyvmsapi 2017-05-25), POST /aliyun-voice/: the same RPC
  signature; SingleCallByTts answers Code "OK" with a CallId, or
  SignatureDoesNotMatch (400), isv.DISPLAY_NUMBER_ILLEGAL, isv.TTS_TEMPLATE_ILLEGAL,
  isv.TEMPLATE_MISSING_PARAMETERS, isv.MOBILE_NUMBER_ILLEGAL, and
  isv.BUSINESS_LIMIT_CONTROL beyond one call a minute per callee (语音通知流控).
  The call then ends as scripted per callee (answered / press:DIGITS / busy /
  no_answer / off, or a list, one per call) and its VoiceReport (call_id,
  status_code, status_msg, dtmf, duration, out_id …) is pushed to `callback`
  as a JSON array, pushed again until the answer is {"code": 0};
  QueryCallDetailByCallId gives Data = JSON string with `state` once the call is over.
  GET /_pushes lists every push and the answer it got.
- Standard Webhooks receiver, POST /json: verified with the `standardwebhooks`
  package when installed (scripts/test installs it).

Usage: platforms.py CONFIG_JSON. Prints the port on the first line of stdout.
GET /_requests returns every request seen, with the verdict it got;
POST /_config merges settings into the running config.
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
LOCK = threading.Lock()
REQUESTS = []
# Per robot: send times (s) in the last minute, and muted-until.
SENT = {}
MUTED = {}


def b64_hmac_sha256(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def rate_limited(robot: str, per_minute: int, mute_s: float) -> bool:
    """Sliding minute per robot; going over mutes it for mute_s seconds."""
    now = time.monotonic()
    with LOCK:
        if MUTED.get(robot, 0) > now:
            return True
        times = [t for t in SENT.get(robot, []) if now - t < 60]
        if len(times) >= per_minute:
            MUTED[robot] = now + mute_s
            SENT[robot] = times
            return True
        times.append(now)
        SENT[robot] = times
        return False


def robot_text(msg: dict) -> str:
    t = msg.get("msgtype") or msg.get("msg_type")
    if t == "text":
        c = msg.get("text") or msg.get("content") or {}
        return c.get("content", "") if "content" in c else c.get("text", "")
    if t == "markdown":
        m = msg.get("markdown", {})
        return m.get("title", "") + "\n" + m.get("text", m.get("content", ""))
    return ""


def dingtalk(query, body):
    cfg = CONFIG.get("dingtalk", {}).get(query.get("access_token", [""])[0])
    if cfg is None:
        return {"errcode": 300001, "errmsg": "token is not exist"}
    if cfg.get("secret"):
        ts = query.get("timestamp", [""])[0]
        sign = query.get("sign", [""])[0]
        want = b64_hmac_sha256(cfg["secret"].encode(), f"{ts}\n{cfg['secret']}".encode())
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < 3600 * 1000
        if not fresh or not hmac.compare_digest(sign, want):
            return {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
    try:
        msg = json.loads(body)
    except ValueError:
        return {"errcode": 400101, "errmsg": "param error"}
    kw = cfg.get("keyword")
    if kw and kw not in robot_text(msg):
        return {"errcode": 310000, "errmsg": "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
    if rate_limited("dingtalk:" + query["access_token"][0], cfg.get("per_minute", 20), 600):
        return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    return {"errcode": 0, "errmsg": "ok"}


def wecom(query, body):
    key = query.get("key", [""])[0]
    if key not in CONFIG.get("wecom", {}):
        return {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1700000000_1_x], from ip: 127.0.0.1"}
    try:
        msg = json.loads(body)
    except ValueError:
        return {"errcode": 40001, "errmsg": "invalid json"}
    if msg.get("msgtype") not in ("text", "markdown"):
        return {"errcode": 40008, "errmsg": "invalid message type"}
    if rate_limited("wecom:" + key, 20, 60):
        return {"errcode": 45009, "errmsg": "api freq out of limit"}
    return {"errcode": 0, "errmsg": "ok"}


def feishu(token, body):
    cfg = CONFIG.get("feishu", {}).get(token)
    if cfg is None:
        return {"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"}
    try:
        msg = json.loads(body)
    except ValueError:
        return {"code": 9499, "data": {}, "msg": "Bad Request"}
    if cfg.get("secret"):
        ts = str(msg.get("timestamp", ""))
        key = f"{ts}\n{cfg['secret']}".encode()
        want = b64_hmac_sha256(key, b"")
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 3600
        if not fresh or not hmac.compare_digest(str(msg.get("sign", "")), want):
            return {"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}
    kw = cfg.get("keyword")
    if kw and kw not in robot_text(msg):
        return {"code": 19024, "data": {}, "msg": "Key Words Not Found"}
    if rate_limited("feishu:" + token, 100, 60):
        return {"code": 11232, "data": {}, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}
    return {"code": 0, "data": {}, "msg": "success"}


def aliyun_encode(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def aliyun_rpc(cfg, body):
    """Aliyun's V2 RPC signature check, shared by SendSms and Dyvmsapi:
    returns (params, req_id, None) or (None, req_id, (status, error answer))."""
    params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    req_id = str(uuid.uuid4()).upper()
    sig = params.pop("Signature", "")
    canonical = "&".join(f"{aliyun_encode(k)}={aliyun_encode(v)}" for k, v in sorted(params.items()))
    to_sign = "POST&%2F&" + aliyun_encode(canonical)
    secret = cfg.get("keys", {}).get(params.get("AccessKeyId", ""))
    if secret is None:
        return None, req_id, (404, {"RequestId": req_id, "Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."})
    want = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(sig, want):
        return None, req_id, (400, {"RequestId": req_id, "Code": "SignatureDoesNotMatch", "Message": f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}"})
    for k in ("Action", "Version", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp", "Format"):
        if k not in params:
            return None, req_id, (400, {"RequestId": req_id, "Code": "MissingParameter", "Message": f"{k} is mandatory for this action."})
    if params["Version"] != "2017-05-25" or params["SignatureMethod"] != "HMAC-SHA1":
        return None, req_id, (400, {"RequestId": req_id, "Code": "InvalidParameter", "Message": "Version or SignatureMethod"})
    return params, req_id, None


def aliyun(body):
    cfg = CONFIG.get("aliyun", {})
    params, req_id, err = aliyun_rpc(cfg, body)
    if err:
        return err
    if params["Action"] != "SendSms":
        return 400, {"RequestId": req_id, "Code": "InvalidAction.NotFound", "Message": "Specified api is not found"}
    if params.get("SignName") != cfg.get("sign_name"):
        return 200, {"RequestId": req_id, "Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "该账号下找不到对应签名"}
    tpl = cfg.get("templates", {}).get(params.get("TemplateCode", ""))
    if tpl is None:
        return 200, {"RequestId": req_id, "Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "该账号下找不到对应模板"}
    phone = params.get("PhoneNumbers", "")
    if not (len(phone) == 11 and phone.startswith("1") and phone.isdigit()):
        return 200, {"RequestId": req_id, "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}
    try:
        vars_ = json.loads(params.get("TemplateParam", "{}"))
    except ValueError:
        return 200, {"RequestId": req_id, "Code": "isv.INVALID_JSON_PARAM", "Message": "JSON参数不合法"}
    missing = [v for v in tpl if v not in vars_]
    if missing:
        return 200, {"RequestId": req_id, "Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": f"模板缺少变量 {missing}"}
    if any("http://" in str(v) or "https://" in str(v) for v in vars_.values()):
        return 200, {"RequestId": req_id, "Code": "isv.PARAM_NOT_SUPPORT_URL", "Message": "不支持URL"}
    if cfg.get("refuse_with"):
        return 200, {"RequestId": req_id, "Code": cfg["refuse_with"], "Message": "refused by test"}
    return 200, {"RequestId": req_id, "Code": "OK", "Message": "OK", "BizId": "900619746936498440^0"}


# Aliyun voice: per call id, its result once the call is over; per callee,
# the times of the calls placed (flow control).
VOICE_CALLS = {}
VOICE_CALLED = {}


def voice_result(cfg, called):
    """The scripted end of a call to `called`: (status_code, status_msg, dtmf)."""
    plan = cfg.get("callees", {}).get(called, cfg.get("default", "no_answer"))
    if isinstance(plan, list):
        # One entry per call, the last repeats.
        n = len(VOICE_CALLED.get(called, [])) - 1
        plan = plan[min(n, len(plan) - 1)]
    if plan.startswith("press:"):
        return "200000", "用户听完语音", plan.split(":", 1)[1]
    return {
        "answered": ("200000", "用户听完语音", ""),
        "busy": ("200002", "用户占线", ""),
        "no_answer": ("200003", "用户收到呼叫但未接听", ""),
        "off": ("200010", "关机", ""),
    }[plan]


def push_receipt(cfg, report):
    """POSTs a VoiceReport to the callback like Aliyun's HTTP batch push:
    a JSON array, retried until the receiver answers {"code": 0}."""
    url = cfg.get("callback")
    if not url:
        return
    data = json.dumps([report], ensure_ascii=False).encode()
    deadline = time.monotonic() + cfg.get("push_for", 120)
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                answer = json.loads(resp.read() or b"{}")
                with LOCK:
                    PUSHES.append({"report": report, "status": resp.status, "answer": answer, "at": time.time()})
                if answer.get("code") == 0:
                    return
        except Exception as e:  # refused, 4xx/5xx, timeout: push again
            with LOCK:
                PUSHES.append({"report": report, "status": getattr(e, "code", None), "error": str(e)})
        time.sleep(cfg.get("push_every", 1.0))


PUSHES = []


def aliyun_voice(body):
    """Dyvmsapi 2017-05-25: SingleCallByTts and QueryCallDetailByCallId."""
    cfg = CONFIG.get("aliyun_voice", {})
    params, req_id, err = aliyun_rpc(cfg, body)
    if err:
        return err
    action = params["Action"]
    if action == "QueryCallDetailByCallId":
        for k in ("CallId", "ProdId", "QueryDate"):
            if not params.get(k):
                return 400, {"RequestId": req_id, "Code": "MissingParameter", "Message": f"{k} is mandatory for this action."}
        with LOCK:
            call = VOICE_CALLS.get(params["CallId"])
        if call is None or time.monotonic() < call["ends_at"]:
            return 200, {"RequestId": req_id, "Code": "OK", "Message": "OK", "Data": ""}
        code, msg, dtmf = call["result"]
        data = {"state": code, "stateDesc": msg, "callee": call["called"], "duration": 12 if code == "200000" else 0,
                "startDate": "", "endDate": "", "dtmf": dtmf}
        return 200, {"RequestId": req_id, "Code": "OK", "Message": "OK", "Data": json.dumps(data, ensure_ascii=False)}
    if action != "SingleCallByTts":
        return 400, {"RequestId": req_id, "Code": "InvalidAction.NotFound", "Message": "Specified api is not found"}
    for k in ("CalledNumber", "CalledShowNumber", "TtsCode"):
        if not params.get(k):
            return 400, {"RequestId": req_id, "Code": "MissingParameter", "Message": f"{k} is mandatory for this action."}
    if params["CalledShowNumber"] not in cfg.get("show_numbers", []):
        return 200, {"RequestId": req_id, "Code": "isv.DISPLAY_NUMBER_ILLEGAL", "Message": "号显不合法"}
    tpl = cfg.get("templates", {}).get(params["TtsCode"])
    if tpl is None:
        return 200, {"RequestId": req_id, "Code": "isv.TTS_TEMPLATE_ILLEGAL", "Message": "TTS模板不合法"}
    called = params["CalledNumber"]
    if not called.isdigit() or not (len(called) == 11 and called.startswith("1") or called.startswith("0")):
        return 200, {"RequestId": req_id, "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "号码格式非法"}
    try:
        vars_ = json.loads(params.get("TtsParam", "{}"))
    except ValueError:
        return 200, {"RequestId": req_id, "Code": "isv.INVALID_JSON_PARAM", "Message": "JSON参数不合法"}
    missing = [v for v in tpl if v not in vars_]
    if missing:
        return 200, {"RequestId": req_id, "Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": f"模板缺少变量 {missing}"}
    play = params.get("PlayTimes", "1")
    if not play.isdigit() or not 1 <= int(play) <= 3:
        return 400, {"RequestId": req_id, "Code": "InvalidParameter", "Message": "PlayTimes must be 1-3"}
    # Flow control per callee (1 a minute by default), counted from every call placed.
    now = time.monotonic()
    interval = cfg.get("per_callee_interval", 60)
    with LOCK:
        times = VOICE_CALLED.get(called, [])
        if times and now - times[-1] < interval:
            return 200, {"RequestId": req_id, "Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码天级流控Permits:1"}
        VOICE_CALLED[called] = times + [now]
        call_id = f"{100000000000 + len(VOICE_CALLS)}^{uuid.uuid4().int % 10**11}"
        result = voice_result(cfg, called)
        ring = cfg.get("ring_secs", 1.0)
        VOICE_CALLS[call_id] = {"called": called, "result": result, "ends_at": now + ring, "out_id": params.get("OutId", "")}
    if cfg.get("callback") and not cfg.get("no_push"):
        code, msg, dtmf = result
        report = {"call_id": call_id, "start_time": "", "end_time": "", "duration": "12" if code == "200000" else "0",
                  "status_code": code, "status_msg": msg, "out_id": params.get("OutId", ""), "dtmf": dtmf,
                  "caller": params["CalledShowNumber"], "callee": called, "voice_type": "voice"}

        def later():
            time.sleep(cfg.get("push_after", ring))
            push_receipt(cfg, report)

        threading.Thread(target=later, daemon=True).start()
    return 200, {"RequestId": req_id, "Code": "OK", "Message": "OK", "CallId": call_id}


def voice_gateway(headers, body):
    """A generic HTTP voice gateway as gridwatch's template backend documents
    it: takes {"to", "text", "delivery_id"} and later POSTs
    {"delivery_id", "result", "key"} to `callback`, signed with the
    `standardwebhooks` package (Standard Webhooks) when `secret` is whsec_…,
    else with `Authorization: Bearer secret`."""
    cfg = CONFIG.get("voice_gateway", {})
    try:
        msg = json.loads(body)
    except ValueError:
        return 400, {"code": 400, "msg": "body is not JSON"}
    if not msg.get("to") or not msg.get("delivery_id") or not msg.get("text"):
        return 400, {"code": 400, "msg": "to, text and delivery_id are required"}
    plan = cfg.get("callees", {}).get(msg["to"], cfg.get("default", "no_answer"))
    result, key = (("answered", plan.split(":", 1)[1]) if plan.startswith("press:") else (plan, None))
    report = {"delivery_id": msg["delivery_id"], "result": result}
    if key:
        report["key"] = key
    url, secret = cfg.get("callback"), cfg.get("secret", "")

    def later():
        time.sleep(cfg.get("push_after", 0.5))
        payload = json.dumps(report)
        hdrs = {"Content-Type": "application/json"}
        if secret.startswith("whsec_"):
            from standardwebhooks.webhooks import Webhook
            msg_id = "msg_" + uuid.uuid4().hex
            now = datetime.datetime.now(tz=datetime.timezone.utc)
            sig = Webhook(secret).sign(msg_id, now, payload)
            hdrs.update({"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                         "webhook-signature": sig})
        elif secret:
            hdrs["Authorization"] = "Bearer " + secret
        deadline = time.monotonic() + cfg.get("push_for", 60)
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(url, data=payload.encode(), method="POST", headers=hdrs)
                with urllib.request.urlopen(req, timeout=5) as resp:
                    with LOCK:
                        PUSHES.append({"report": report, "status": resp.status})
                    return
            except Exception as e:
                with LOCK:
                    PUSHES.append({"report": report, "status": getattr(e, "code", None), "error": str(e)})
            time.sleep(1.0)

    if url:
        threading.Thread(target=later, daemon=True).start()
    return 200, {"code": 0, "msg": "accepted", "call_id": uuid.uuid4().hex}


def tencent(headers, body):
    cfg = CONFIG.get("tencent", {})
    req_id = str(uuid.uuid4())

    def error(code, message):
        return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": req_id}}

    auth = headers.get("authorization", "")
    try:
        algo, rest = auth.split(" ", 1)
        parts = dict(p.strip().split("=", 1) for p in rest.split(","))
        secret_id, date, service, term = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        signature = parts["Signature"]
    except (ValueError, KeyError):
        return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
    key = cfg.get("keys", {}).get(secret_id)
    if algo != "TC3-HMAC-SHA256" or key is None or term != "tc3_request" or service != "sms":
        return error("AuthFailure.SecretIdNotFound" if key is None else "AuthFailure.SignatureFailure", "credential")
    ts = headers.get("x-tc-timestamp", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        return error("AuthFailure.SignatureExpire", "Signature expired.")
    if datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%d") != date:
        return error("AuthFailure.SignatureFailure", "date does not match the timestamp")
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
    canonical = "\n".join([
        "POST", "/", "", canonical_headers, ";".join(signed),
        hashlib.sha256(body.encode()).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", ts, scope, hashlib.sha256(canonical.encode()).hexdigest()])

    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    k = h(h(h(("TC3" + key).encode(), date), service), "tc3_request")
    if not hmac.compare_digest(signature, hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()):
        return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct.")
    if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
        return error("InvalidAction", "action or version")
    if "content-type" not in signed or "host" not in signed:
        return error("AuthFailure.SignatureFailure", "content-type and host must be signed")
    try:
        msg = json.loads(body)
    except ValueError:
        return error("InvalidParameter", "body")
    if msg.get("SmsSdkAppId") != cfg.get("app_id"):
        return error("FailedOperation.SmsSdkAppIdVerifyFail", "SdkAppId")
    if msg.get("SignName") != cfg.get("sign_name"):
        return error("FailedOperation.SignatureIncorrectOrUnapproved", "sign")
    n_params = cfg.get("templates", {}).get(msg.get("TemplateId"))
    if n_params is None:
        return error("FailedOperation.TemplateIncorrectOrUnapproved", "template")
    params = msg.get("TemplateParamSet", [])
    if len(params) != n_params:
        return error("InvalidParameterValue.TemplateParameterFormatError", f"want {n_params} params")
    if any("http://" in p or "https://" in p for p in params):
        return error("InvalidParameterValue.ContentLengthLimit", "url in a parameter")
    statuses = []
    for number in msg.get("PhoneNumberSet", []):
        ok = number.startswith("+861") and len(number) == 14 and number[1:].isdigit()
        code = cfg.get("refuse_with") or ("Ok" if ok else "InvalidParameterValue.IncorrectPhoneNumber")
        statuses.append({
            "SerialNo": str(uuid.uuid4()), "PhoneNumber": number, "Fee": 1,
            "SessionContext": msg.get("SessionContext", ""), "Code": code,
            "Message": "send success" if code == "Ok" else "refused", "IsoCode": "CN",
        })
    return {"Response": {"SendStatusSet": statuses, "RequestId": req_id}}


def standard(headers, body):
    secret = CONFIG.get("standard", {}).get("secret")
    if not secret:
        return 200, {"ok": True}, None
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError:
        return 200, {"ok": True}, "standardwebhooks not installed"
    try:
        Webhook(secret).verify(body, {k: v for k, v in headers.items()})
        return 200, {"ok": True}, "verified"
    except WebhookVerificationError as e:
        return 401, {"ok": False, "error": str(e)}, f"refused: {e}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/_requests"):
            with LOCK:
                self.reply(200, list(REQUESTS))
        elif self.path.startswith("/_pushes"):
            with LOCK:
                self.reply(200, list(PUSHES))
        else:
            self.reply(404, {"error": "no such path"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, note = 200, None
        if url.path == "/_config":
            # Merges per-platform settings known only later (the callback URL).
            with LOCK:
                for k, v in json.loads(body).items():
                    CONFIG.setdefault(k, {}).update(v)
            self.reply(200, {"ok": True})
            return
        if url.path == "/dingtalk/robot/send":
            platform, answer = "dingtalk", dingtalk(query, body)
        elif url.path == "/wecom/cgi-bin/webhook/send":
            platform, answer = "wecom", wecom(query, body)
        elif url.path.startswith("/feishu/open-apis/bot/v2/hook/"):
            platform, answer = "feishu", feishu(url.path.rsplit("/", 1)[1], body)
        elif url.path == "/aliyun/":
            platform = "aliyun"
            status, answer = aliyun(body)
        elif url.path == "/aliyun-voice/":
            platform = "aliyun_voice"
            status, answer = aliyun_voice(body)
        elif url.path == "/voice-gateway":
            platform = "voice_gateway"
            status, answer = voice_gateway(headers, body)
        elif url.path == "/tencent/":
            platform, answer = "tencent", tencent(headers, body)
        elif url.path == "/json":
            platform = "json"
            status, answer, note = standard(headers, body)
        else:
            self.reply(404, {"error": "no such path"})
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = dict(urllib.parse.parse_qsl(body))
        with LOCK:
            REQUESTS.append({
                "platform": platform, "path": url.path, "query": url.query,
                "headers": headers, "body": parsed, "answer": answer,
                "status": status, "note": note, "at": time.time(),
            })
        self.reply(status, answer)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
