//! An HTTP server on 127.0.0.1 that records every request (webhooks, the SMS
//! gateway) and answers the way a test tells it to: 200, an error status, or
//! 200 after a delay.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    /// Status the sink answered.
    pub status: u16,
    /// When it arrived (monotonic).
    pub received_at: Instant,
    /// When it arrived (wall clock; compare with a reading's `ts`).
    pub received_wall: SystemTime,
}

impl RecordedRequest {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body; panics (naming the path) when the body is not JSON.
    pub fn json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "request to {} has no JSON body: {:?}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpBehaviour {
    /// 200 with an empty JSON object.
    Ok,
    /// This status code (e.g. 500, 503, 400).
    Status(u16),
    /// 200 after this delay (for timeout tests).
    Delay(Duration),
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    behaviour: Arc<Mutex<HttpBehaviour>>,
}

/// The running HTTP sink; stopped on drop.
pub struct HttpSink {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl HttpSink {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> HttpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("HttpSink: bind 127.0.0.1:0");
        HttpSink::start_on(listener).await
    }

    /// Starts on a listener the caller bound (e.g. a port configured earlier).
    pub async fn start_on(listener: tokio::net::TcpListener) -> HttpSink {
        let addr = listener.local_addr().expect("local_addr");
        let shared = Shared {
            requests: Arc::default(),
            behaviour: Arc::new(Mutex::new(HttpBehaviour::Ok)),
        };
        let app = Router::new().fallback(record).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpSink { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how the following requests are answered.
    pub fn set_behaviour(&self, behaviour: HttpBehaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests to exactly this path.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Requests to this path that were answered 2xx (what the sender saw delivered).
    pub fn delivered_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests_to(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let received_at = Instant::now();
    let received_wall = SystemTime::now();
    let behaviour = *shared.behaviour.lock().unwrap_or_else(|e| e.into_inner());
    let status = match behaviour {
        HttpBehaviour::Ok | HttpBehaviour::Delay(_) => StatusCode::OK,
        HttpBehaviour::Status(code) => {
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    let request = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        json: serde_json::from_slice(&body).ok(),
        body: body.to_vec(),
        status: status.as_u16(),
        received_at,
        received_wall,
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request);
    if let HttpBehaviour::Delay(delay) = behaviour {
        tokio::time::sleep(delay).await;
    }
    (status, "{}")
}
