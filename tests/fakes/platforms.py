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
- Standard Webhooks receiver, POST /json: verified with the `standardwebhooks`
  package when installed (scripts/test installs it).

Usage: platforms.py CONFIG_JSON. Prints the port on the first line of stdout.
GET /_requests returns every request seen, with the verdict it got.
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


def aliyun(body):
    cfg = CONFIG.get("aliyun", {})
    params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    req_id = str(uuid.uuid4()).upper()
    sig = params.pop("Signature", "")
    canonical = "&".join(f"{aliyun_encode(k)}={aliyun_encode(v)}" for k, v in sorted(params.items()))
    to_sign = "POST&%2F&" + aliyun_encode(canonical)
    secret = cfg.get("keys", {}).get(params.get("AccessKeyId", ""))
    if secret is None:
        return 404, {"RequestId": req_id, "Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."}
    want = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(sig, want):
        return 400, {"RequestId": req_id, "Code": "SignatureDoesNotMatch", "Message": f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}"}
    for k in ("Action", "Version", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp", "Format"):
        if k not in params:
            return 400, {"RequestId": req_id, "Code": "MissingParameter", "Message": f"{k} is mandatory for this action."}
    if params["Action"] != "SendSms" or params["Version"] != "2017-05-25" or params["SignatureMethod"] != "HMAC-SHA1":
        return 400, {"RequestId": req_id, "Code": "InvalidParameter", "Message": "Action, Version or SignatureMethod"}
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
        else:
            self.reply(404, {"error": "no such path"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, note = 200, None
        if url.path == "/dingtalk/robot/send":
            platform, answer = "dingtalk", dingtalk(query, body)
        elif url.path == "/wecom/cgi-bin/webhook/send":
            platform, answer = "wecom", wecom(query, body)
        elif url.path.startswith("/feishu/open-apis/bot/v2/hook/"):
            platform, answer = "feishu", feishu(url.path.rsplit("/", 1)[1], body)
        elif url.path == "/aliyun/":
            platform = "aliyun"
            status, answer = aliyun(body)
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
