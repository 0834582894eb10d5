//! Just enough RFC 5322 / MIME to read what the gateway mails: header
//! unfolding, RFC 2047 encoded-words (lettre encodes non-ASCII subjects) and
//! single-part bodies in base64 or quoted-printable.

use base64::Engine as _;

/// Splits a raw message into unfolded `(name, value)` headers and the body bytes.
pub fn split_message(raw: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    (parse_headers(&String::from_utf8_lossy(head)), body.to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a header block, joining folded continuation lines (RFC 5322 §2.2.3).
pub fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                // Unfolding removes the CRLF only; the leading whitespace stays.
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
}

/// Decodes RFC 2047 encoded-words (`=?charset?B|Q?text?=`) in a header value.
/// Whitespace between two adjacent encoded-words is dropped, as the RFC says.
pub fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while !rest.is_empty() {
        match rest.find("=?") {
            Some(start) => {
                let (before, candidate) = rest.split_at(start);
                match decode_word(candidate) {
                    Some((decoded, used)) => {
                        let only_space = before.chars().all(char::is_whitespace);
                        if !(last_was_word && only_space) {
                            out.push_str(before);
                        }
                        out.push_str(&decoded);
                        rest = &candidate[used..];
                        last_was_word = true;
                    }
                    None => {
                        out.push_str(before);
                        out.push_str("=?");
                        rest = &candidate[2..];
                        last_was_word = false;
                    }
                }
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

/// Decodes one encoded-word at the start of `s`; returns the text and the bytes consumed.
fn decode_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    let _ = charset; // utf-8 in practice; anything else is shown lossily
    let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}

/// The `Q` encoding: `_` is a space, `=XX` a byte.
fn decode_q(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// Decodes a quoted-printable body (RFC 2045 §6.7), soft line breaks included.
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            if body[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if body[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            let hex = body
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// Decodes a single-part body by its `Content-Transfer-Encoding` (7bit/8bit pass through).
pub fn decode_body(transfer_encoding: Option<&str>, body: &[u8]) -> String {
    let encoding = transfer_encoding.unwrap_or("7bit").to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|_| body.to_vec())
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_q_words_and_joins_adjacent_ones() {
        assert_eq!(
            decode_rfc2047("=?utf-8?b?5LiJ?= =?UTF-8?B?5bmi?= x"),
            "三幢 x"
        );
        assert_eq!(decode_rfc2047("=?utf-8?q?a_b=3Dc?="), "a b=c");
        assert_eq!(decode_rfc2047("plain =? not a word"), "plain =? not a word");
    }

    #[test]
    fn unfolds_headers() {
        let h = parse_headers("Subject: a\r\n  b\r\nX-Y: z\r\n");
        assert_eq!(h[0], ("Subject".into(), "a  b".into()));
        assert_eq!(h[1], ("X-Y".into(), "z".into()));
    }

    #[test]
    fn decodes_quoted_printable_with_soft_breaks() {
        assert_eq!(decode_quoted_printable(b"a=3Db=\r\nc"), b"a=bc");
    }
}
