//! Masking of personal data for logs: residents' and contacts' phone numbers
//! and email addresses must never reach a log file in clear (they end up in
//! journald, support tickets and screenshots), yet an operator still needs to
//! tell two contacts apart, so a few leading and trailing characters stay.

/// Masks phone numbers and email addresses anywhere in `s`.
///
/// - `+` followed by 7–15 digits (E.164), or a bare 11-digit Chinese mobile
///   number `1[3-9]xxxxxxxxx`: the four digits before the last four become
///   `****` (`+8613800000001` → `+86138****0001`).
/// - `local@domain.tld`: the local part keeps its first character
///   (`wang@example.org` → `w***@example.org`).
///
/// Digit runs glued to letters (ids, hashes) and other numbers (epoch
/// timestamps, readings) are left alone, so log lines stay useful.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = email_at(&chars, i) {
            out.push_str(&mask_email(&chars[i..end]));
            i = end;
        } else if let Some(end) = phone_at(&chars, i) {
            out.push_str(&mask_phone(&chars[i..end]));
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

/// If an email address starts at `i` (and `i` is the start of its local
/// part), returns the end index of the address.
fn email_at(chars: &[char], i: usize) -> Option<usize> {
    if !is_local_char(chars[i]) || (i > 0 && is_local_char(chars[i - 1])) {
        return None;
    }
    let at = (i..chars.len()).find(|&j| !is_local_char(chars[j]))?;
    if at == i || chars[at] != '@' {
        return None;
    }
    let mut end = at + 1;
    while end < chars.len() && is_domain_char(chars[end]) {
        end += 1;
    }
    // A trailing dot ends the sentence, not the domain.
    while end > at + 1 && chars[end - 1] == '.' {
        end -= 1;
    }
    let domain: String = chars[at + 1..end].iter().collect();
    let valid = domain.contains('.') && !domain.starts_with('.') && !domain.starts_with('-');
    valid.then_some(end)
}

fn mask_email(addr: &[char]) -> String {
    let at = addr.iter().position(|&c| c == '@').unwrap_or(0);
    let mut out = String::new();
    out.extend(addr.first());
    out.push_str("***");
    out.extend(&addr[at..]);
    out
}

/// If a phone number starts at `i`, returns its end index.
fn phone_at(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (is_word(chars[i - 1]) || chars[i - 1] == '+' || chars[i - 1] == '.') {
        return None;
    }
    let plus = chars[i] == '+';
    let start = if plus { i + 1 } else { i };
    let end = (start..chars.len())
        .find(|&j| !chars[j].is_ascii_digit())
        .unwrap_or(chars.len());
    let digits = end - start;
    if end < chars.len() && (is_word(chars[end]) || chars[end] == '.' && next_is_digit(chars, end))
    {
        return None;
    }
    let ok = if plus {
        (7..=15).contains(&digits)
    } else {
        digits == 11
            && chars[start] == '1'
            && chars
                .get(start + 1)
                .is_some_and(|c| ('3'..='9').contains(c))
    };
    ok.then_some(end)
}

fn next_is_digit(chars: &[char], j: usize) -> bool {
    chars.get(j + 1).is_some_and(char::is_ascii_digit)
}

fn mask_phone(p: &[char]) -> String {
    let n = p.len();
    let from = n.saturating_sub(8);
    let to = n.saturating_sub(4);
    p.iter()
        .enumerate()
        .map(|(k, &c)| {
            if k >= from && k < to && c.is_ascii_digit() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_cn_mobile_with_country_code() {
        assert_eq!(mask("+8613800000001"), "+86138****0001");
    }

    #[test]
    fn masks_bare_cn_mobile() {
        assert_eq!(mask("13800000001"), "138****0001");
    }

    #[test]
    fn masks_email() {
        assert_eq!(mask("wang@example.org"), "w***@example.org");
    }

    #[test]
    fn masks_inside_text() {
        let s = "send to +8613800000001 failed: 550 <wang@example.org> unknown, also 13912345678.";
        assert_eq!(
            mask(s),
            "send to +86138****0001 failed: 550 <w***@example.org> unknown, also 139****5678."
        );
    }

    #[test]
    fn masks_chinese_text_around() {
        assert_eq!(
            mask("张奶奶电话13800000001，邮箱zhang.son@example.com。"),
            "张奶奶电话138****0001，邮箱z***@example.com。"
        );
    }

    #[test]
    fn leaves_timestamps_ids_and_readings() {
        let s = "ts=1764000000123 id=01JD13800000001X value=0.21 dev smk-3-2-501-k 12345678901";
        assert_eq!(mask(s), s);
    }

    #[test]
    fn leaves_at_without_domain() {
        let s = "user@localhost and @all";
        assert_eq!(mask(s), s);
    }
}
