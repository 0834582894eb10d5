//! A real SMTP server on 127.0.0.1 that records every message it accepts.
//!
//! It speaks what a plain-SMTP client such as lettre needs (EHLO/HELO, MAIL,
//! RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT; PIPELINING, 8BITMIME and
//! SMTPUTF8 advertised, STARTTLS deliberately not), and it can be stopped —
//! listener and open connections alike — and started again on the same port,
//! which is how the tests make "SMTP is down" and "SMTP is back".

use crate::mime;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct SmtpMessage {
    /// Envelope sender (`MAIL FROM`), without the angle brackets.
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`), without the angle brackets.
    pub rcpt_to: Vec<String>,
    /// The DATA section after dot-unstuffing, without the final `.` line.
    pub data: Vec<u8>,
    /// Unfolded headers, values as sent (encoded-words not decoded).
    pub headers: Vec<(String, String)>,
    /// The Subject with RFC 2047 encoded-words decoded.
    pub subject: Option<String>,
}

impl SmtpMessage {
    fn parse(mail_from: String, rcpt_to: Vec<String>, data: Vec<u8>) -> SmtpMessage {
        let (headers, _) = mime::split_message(&data);
        let subject = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("subject"))
            .map(|(_, v)| mime::decode_rfc2047(v));
        SmtpMessage {
            mail_from,
            rcpt_to,
            data,
            headers,
            subject,
        }
    }

    /// First header of that name (case-insensitive), raw value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body of a single-part message, transfer encoding undone.
    pub fn body_text(&self) -> String {
        let (_, body) = mime::split_message(&self.data);
        mime::decode_body(self.header("Content-Transfer-Encoding"), &body)
    }
}

/// How the sink answers the end of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpBehaviour {
    /// `250`: message accepted and recorded.
    Accept,
    /// Reply with this code (e.g. 451 transient, 550 permanent) and record nothing.
    RejectData(u16),
}

type Store = Arc<Mutex<Vec<SmtpMessage>>>;

/// The running (or stopped) SMTP sink. Messages survive stop/start.
pub struct SmtpSink {
    port: u16,
    messages: Store,
    behaviour: Arc<Mutex<SmtpBehaviour>>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl SmtpSink {
    /// Starts on a free port.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_on(0).await
    }

    /// Starts on `port` (0 = any free port).
    pub async fn start_on(port: u16) -> SmtpSink {
        let mut sink = SmtpSink {
            port,
            messages: Store::default(),
            behaviour: Arc::new(Mutex::new(SmtpBehaviour::Accept)),
            server: None,
        };
        sink.listen(port).await;
        sink
    }

    async fn listen(&mut self, port: u16) {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("SmtpSink: bind 127.0.0.1:{port}: {e}"));
        self.port = listener.local_addr().expect("local_addr").port();
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(
            listener,
            self.messages.clone(),
            self.behaviour.clone(),
            stop_rx,
        ));
        self.server = Some((stop_tx, task));
    }

    /// Its port (kept across stop/start).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether it is listening.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Closes the listener and every open connection, and waits until they are closed.
    pub async fn stop(&mut self) {
        if let Some((stop_tx, task)) = self.server.take() {
            let _ = stop_tx.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port, keeping the recorded messages.
    pub async fn restart(&mut self) {
        assert!(!self.is_running(), "SmtpSink::restart while running");
        self.listen(self.port).await;
    }

    /// Changes how the end of DATA is answered.
    pub fn set_behaviour(&self, behaviour: SmtpBehaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Every accepted message so far, in order of arrival.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Accepted messages with `rcpt` among their envelope recipients.
    pub fn messages_to(&self, rcpt: &str) -> Vec<SmtpMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(rcpt)))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some((stop_tx, task)) = self.server.take() {
            let _ = stop_tx.send(());
            task.abort();
        }
    }
}

/// Accept loop; on stop, drops the listener and shuts every connection down.
async fn serve(
    listener: TcpListener,
    store: Store,
    behaviour: Arc<Mutex<SmtpBehaviour>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(session(stream, store.clone(), behaviour.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// The transaction state of one SMTP session.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    rcpts: Vec<String>,
}

/// One SMTP session; returns on QUIT, EOF or I/O error.
async fn session(stream: TcpStream, store: Store, behaviour: Arc<Mutex<SmtpBehaviour>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if write
        .write_all(b"220 gridwatch-e2e SMTP sink\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut env = Envelope::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-gridwatch-e2e\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n".into(),
            "HELO" => "250 gridwatch-e2e\r\n".into(),
            "MAIL" => match path_arg(command, "FROM:") {
                Some(from) => {
                    env = Envelope { from: Some(from), rcpts: Vec::new() };
                    "250 OK\r\n".into()
                }
                None => "501 syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match (env.from.is_some(), path_arg(command, "TO:")) {
                (false, _) => "503 MAIL first\r\n".into(),
                (true, Some(rcpt)) => {
                    env.rcpts.push(rcpt);
                    "250 OK\r\n".into()
                }
                (true, None) => "501 syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" if env.rcpts.is_empty() => "503 RCPT first\r\n".into(),
            "DATA" => {
                if write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.is_err() {
                    return;
                }
                let Some(data) = read_data(&mut reader).await else {
                    return;
                };
                let now = *behaviour.lock().unwrap_or_else(|e| e.into_inner());
                let env = std::mem::take(&mut env);
                match now {
                    SmtpBehaviour::Accept => {
                        let message = SmtpMessage::parse(env.from.unwrap_or_default(), env.rcpts, data);
                        let mut messages = store.lock().unwrap_or_else(|e| e.into_inner());
                        messages.push(message);
                        format!("250 OK queued as {}\r\n", messages.len())
                    }
                    SmtpBehaviour::RejectData(code) => format!("{code} rejected by test\r\n"),
                }
            }
            "RSET" => {
                env = Envelope::default();
                "250 OK\r\n".into()
            }
            "NOOP" => "250 OK\r\n".into(),
            "QUIT" => {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            }
            "STARTTLS" => "454 TLS not available\r\n".into(),
            _ => "502 command not implemented\r\n".into(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads the DATA section up to the lone `.` line, undoing dot-stuffing.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(data);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

/// The `<address>` after `MAIL FROM:` / `RCPT TO:` (parameters after it ignored).
fn path_arg(command: &str, keyword: &str) -> Option<String> {
    let upper = command.to_ascii_uppercase();
    let at = upper.find(keyword)? + keyword.len();
    let rest = command[at..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::path_arg;

    #[test]
    fn parses_paths_with_parameters() {
        assert_eq!(
            path_arg("MAIL FROM:<a@b.org> BODY=8BITMIME SMTPUTF8", "FROM:"),
            Some("a@b.org".into())
        );
        assert_eq!(path_arg("rcpt to: <x@y>", "TO:"), Some("x@y".into()));
        assert_eq!(path_arg("MAIL FROM:<>", "FROM:"), Some(String::new()));
        assert_eq!(path_arg("MAIL FROM:a@b", "FROM:"), None);
    }
}
