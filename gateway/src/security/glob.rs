//! Device-id globs of `[[mqtt.users]] devices = ["smk-3-*"]`: `*` matches any
//! run of characters, `?` one character; everything else is literal. Device
//! ids are short ASCII, so a simple backtracking matcher is enough and cannot
//! blow up (one star position is remembered, as in the classic wildcard match).

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("smk-3-*", "smk-3-2-501-k"));
        assert!(matches("*", "anything"));
        assert!(matches("rcm-?-db", "rcm-3-db"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(matches("exact", "exact"));
        assert!(!matches("smk-3-*", "smk-4-1"));
        assert!(!matches("rcm-?-db", "rcm-33-db"));
        assert!(!matches("exact", "exact2"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(!matches("", "x"));
        assert!(matches("", ""));
    }
}
