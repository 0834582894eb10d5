//! `${ENV_VAR}` expansion inside config string values (pure: the lookup is a parameter).
//!
//! Forms, applied to the decoded value of a TOML string:
//! - `${NAME}`: the variable's value; unset is an error.
//! - `${NAME:-default}`: the variable's value, or `default` when it is unset or
//!   empty (shell semantics). This lets the shipped config start with no
//!   environment while installers override every secret.
//! - `$${`: a literal `${`.
//!
//! `NAME` is `[A-Za-z_][A-Za-z0-9_]*`; a default cannot contain `}`.

/// The result of expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    /// The value after substitution.
    pub value: String,
    /// Whether any `${...}` reference was present.
    pub referenced: bool,
    /// Names of variables that were unset and replaced by their `:-default`.
    pub defaulted: Vec<String>,
}

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpandError {
    #[error("environment variable {0} is not set (write \"${{{0}:-default}}\" to give a default)")]
    Missing(String),
    #[error("unterminated \"${{\" (write \"$${{\" for a literal \"${{\")")]
    Unterminated,
    #[error("invalid environment variable name {0:?}")]
    BadName(String),
}

/// Expands every reference in `input`; returns all problems found.
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<ExpandError>> {
    let mut out = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut referenced = false;
    let mut defaulted = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            referenced = true;
            let Some(end) = tail.find('}') else {
                errors.push(ExpandError::Unterminated);
                out.push_str(after);
                rest = "";
                break;
            };
            let body = &tail[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !valid_name(name) {
                errors.push(ExpandError::BadName(name.to_string()));
            } else {
                match (
                    env(name).filter(|v| default.is_none() || !v.is_empty()),
                    default,
                ) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => {
                        defaulted.push(name.to_string());
                        out.push_str(d);
                    }
                    (None, None) => errors.push(ExpandError::Missing(name.to_string())),
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(Expanded {
            value: out,
            referenced,
            defaulted,
        })
    } else {
        Err(errors)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr\"et".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let e = expand("a ${TOKEN} b", &env).unwrap();
        assert_eq!(e.value, "a s3cr\"et b");
        assert!(e.referenced);
        let e = expand("${NOPE:-demo}/${EMPTY:-x}", &env).unwrap();
        assert_eq!(e.value, "demo/x");
        assert_eq!(e.defaulted, vec!["NOPE".to_string(), "EMPTY".to_string()]);
        let e = expand("cost $5 and $${LITERAL}", &env).unwrap();
        assert_eq!(e.value, "cost $5 and ${LITERAL}");
        assert!(!e.referenced);
        assert_eq!(expand("${EMPTY}", &env).unwrap().value, "");
    }

    #[test]
    fn reports_every_problem() {
        let errs = expand("${A} ${B} ${1x} ${open", &env).unwrap_err();
        assert_eq!(
            errs,
            vec![
                ExpandError::Missing("A".into()),
                ExpandError::Missing("B".into()),
                ExpandError::BadName("1x".into()),
                ExpandError::Unterminated,
            ]
        );
    }
}
