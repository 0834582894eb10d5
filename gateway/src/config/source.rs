//! One config file: its text, a span-keeping parse of it, `${ENV}` expansion,
//! and the byte-offset → line:column mapping every error goes through.
//!
//! How expansion keeps positions right and cannot break quoting: the original
//! text is parsed with `toml_edit` (which keeps the span of every value); each
//! string value containing `${` is expanded on its *decoded* value, and its
//! literal in the text is replaced by a freshly encoded basic string (every
//! quote, backslash and control character escaped, so a value can never end
//! the literal early or inject TOML). A multi-line literal is replaced by a
//! multi-line basic string that ends in a line-continuation backslash followed
//! by as many newlines as the original had, so every later line keeps its
//! number. The typed structs are deserialized from that expanded text, and
//! each error offset is mapped back through the recorded edits to the original
//! text, so columns stay right too.

use super::env::{expand, ExpandError};
use super::ConfigError;
use serde::de::{DeserializeOwned, IntoDeserializer};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{ImDocument, Item, Value};

/// A step of a path into a TOML document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    /// A key of a table or inline table.
    K(&'a str),
    /// An index into an array or array of tables.
    I(usize),
}

/// A replaced literal: `orig` in the original text became `new` in the expanded one.
#[derive(Debug, Clone)]
struct Edit {
    orig: Range<usize>,
    new: Range<usize>,
}

/// A parsed config file and everything needed to point into it.
pub(crate) struct Source {
    /// Path as shown in messages.
    pub path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
    doc: Option<ImDocument<String>>,
}

/// An environment lookup (the process environment in production, a map in tests).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Source {
    /// Wraps a file's text; syntax errors go to `errors`.
    pub fn new(path: &Path, text: String, errors: &mut Vec<ConfigError>) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let parsed = ImDocument::parse(text.clone());
        let mut src = Source {
            path: path.to_path_buf(),
            text,
            line_starts,
            doc: None,
        };
        match parsed {
            Ok(doc) => src.doc = Some(doc),
            Err(e) => {
                let msg = first_line(e.message());
                errors.push(src.error(e.span(), format!("TOML syntax error: {msg}")));
            }
        }
        src
    }

    /// An error (or warning) at a byte span of the original text.
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error at the item found at `path` (or its deepest existing parent).
    pub fn error_at(&self, path: &[Seg], message: impl Into<String>) -> ConfigError {
        self.error(self.span(path), message)
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }

    /// Span of the item at `path`, or of its deepest existing ancestor that has one.
    pub fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut node = Node::Item(self.doc.as_ref()?.as_item());
        let mut best = None;
        for seg in path {
            let Some(next) = node.child(*seg) else { break };
            node = next;
            if let Some(s) = node.span() {
                best = Some(s);
            }
        }
        best
    }

    /// The decoded string at `path` as written (before `${ENV}` expansion).
    pub fn raw_str(&self, path: &[Seg]) -> Option<&str> {
        let mut node = Node::Item(self.doc.as_ref()?.as_item());
        for seg in path {
            node = node.child(*seg)?;
        }
        node.as_str()
    }

    /// Expands `${ENV}`, deserializes `T`, and reports every problem found.
    /// `entries` names the top-level arrays whose entries are checked one by
    /// one when the whole file fails, so a ledger with three typos shows three errors.
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        env: EnvLookup,
        entries: &[EntryCheck],
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let doc = self.doc.as_ref()?;
        let (expanded, edits) = self.expand_all(doc, env, errors);
        match toml::from_str::<T>(&expanded) {
            Ok(v) => Some(v),
            Err(whole) => {
                let mut found = diagnose::<T>(&expanded, entries);
                if found.is_empty() {
                    found.push((whole.span(), whole.message().to_string()));
                }
                for (span, msg) in found {
                    let span = span.map(|s| map_back(&edits, s.start)..map_back(&edits, s.end));
                    errors.push(self.error(span, first_line(&msg)));
                }
                None
            }
        }
    }

    /// Rewrites every string literal that holds `${...}`; see the module docs.
    fn expand_all(
        &self,
        doc: &ImDocument<String>,
        env: EnvLookup,
        errors: &mut Vec<ConfigError>,
    ) -> (String, Vec<Edit>) {
        let mut strings = Vec::new();
        collect_strings(doc.as_item(), &mut strings);
        strings.sort_by_key(|(span, _)| span.start);
        let mut out = String::with_capacity(self.text.len());
        let mut edits = Vec::new();
        let mut copied = 0;
        for (span, value) in strings {
            if !value.contains('$') {
                continue;
            }
            let expanded = match expand(&value, env) {
                Ok(e) => e,
                Err(errs) => {
                    for e in errs {
                        errors.push(self.error(Some(span.clone()), describe(&e)));
                    }
                    continue;
                }
            };
            if expanded.value == value {
                continue;
            }
            let Some(original) = self.text.get(span.clone()) else {
                continue;
            };
            let newlines = original.matches('\n').count();
            out.push_str(&self.text[copied..span.start]);
            let start = out.len();
            out.push_str(&encode_literal(&expanded.value, newlines));
            edits.push(Edit {
                orig: span.clone(),
                new: start..out.len(),
            });
            copied = span.end;
        }
        out.push_str(&self.text[copied..]);
        (out, edits)
    }
}

/// Deserializes one entry of a top-level array; returns the error if it fails.
pub(crate) type EntryCheck = (&'static str, fn(Value) -> Result<(), toml_edit::de::Error>);

/// Builds an [`EntryCheck`] for entries of type `E` under `key`.
pub(crate) fn entry<E: DeserializeOwned>(key: &'static str) -> EntryCheck {
    (key, |v| E::deserialize(v.into_deserializer()).map(|_| ()))
}

/// Checks each listed array entry on its own, then the rest of the file as `T`.
fn diagnose<T: DeserializeOwned>(
    expanded: &str,
    entries: &[EntryCheck],
) -> Vec<(Option<Range<usize>>, String)> {
    let Ok(doc) = ImDocument::parse(expanded.to_string()) else {
        return Vec::new();
    };
    let mut root = doc.into_table();
    let mut found = Vec::new();
    for (key, check) in entries {
        let Some(item) = root.remove(key) else {
            continue;
        };
        let values: Vec<(Option<Range<usize>>, Value)> = match item {
            Item::ArrayOfTables(a) => a
                .into_iter()
                .map(|t| (t.span(), Value::InlineTable(t.into_inline_table())))
                .collect(),
            Item::Value(Value::Array(a)) => a.into_iter().map(|v| (v.span(), v)).collect(),
            other => {
                // Not an array: leave it for the whole-file pass to report.
                root.insert(key, other);
                continue;
            }
        };
        for (span, value) in values {
            if let Err(e) = check(value) {
                found.push((e.span().or(span), e.message().to_string()));
            }
        }
    }
    let rest = Value::InlineTable(root.into_inline_table());
    if let Err(e) = T::deserialize(rest.into_deserializer()) {
        found.push((e.span(), e.message().to_string()));
    }
    found
}

/// A position in a parsed document: array-of-tables entries are `Table`s and
/// inline values are `Value`s, neither of which is an `Item`.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn child(self, seg: Seg) -> Option<Node<'a>> {
        match (self, seg) {
            (Node::Item(Item::Table(t)) | Node::Table(t), Seg::K(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::ArrayOfTables(a)), Seg::I(i)) => a.get(i).map(Node::Table),
            (Node::Item(Item::Value(v)) | Node::Value(v), seg) => match (v, seg) {
                (Value::InlineTable(t), Seg::K(k)) => t.get(k).map(Node::Value),
                (Value::Array(a), Seg::I(i)) => a.get(i).map(Node::Value),
                _ => None,
            },
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn as_str(self) -> Option<&'a str> {
        match self {
            Node::Item(i) => i.as_str(),
            Node::Value(v) => v.as_str(),
            Node::Table(_) => None,
        }
    }
}

/// Every string value in the document with its literal's span.
fn collect_strings(item: &Item, out: &mut Vec<(Range<usize>, String)>) {
    match item {
        Item::Table(t) => t.iter().for_each(|(_, i)| collect_strings(i, out)),
        Item::ArrayOfTables(a) => a
            .iter()
            .for_each(|t| t.iter().for_each(|(_, i)| collect_strings(i, out))),
        Item::Value(v) => collect_value_strings(v, out),
        Item::None => {}
    }
}

fn collect_value_strings(v: &Value, out: &mut Vec<(Range<usize>, String)>) {
    match v {
        Value::String(s) => {
            if let Some(span) = s.span() {
                out.push((span, s.value().clone()));
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_value_strings(v, out)),
        Value::InlineTable(t) => t.iter().for_each(|(_, v)| collect_value_strings(v, out)),
        _ => {}
    }
}

/// A TOML basic string holding `value`, spanning `newlines` extra lines.
fn encode_literal(value: &str, newlines: usize) -> String {
    let mut s = String::with_capacity(value.len() + 8);
    let quotes = if newlines == 0 { "\"" } else { "\"\"\"" };
    s.push_str(quotes);
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => s.push(c),
        }
    }
    if newlines > 0 {
        // A line-ending backslash trims the newlines that follow it.
        s.push('\\');
        s.push_str(&"\n".repeat(newlines));
    }
    s.push_str(quotes);
    s
}

/// Maps a byte offset of the expanded text back to the original text.
fn map_back(edits: &[Edit], offset: usize) -> usize {
    let mut shift: isize = 0;
    for e in edits {
        if offset < e.new.start {
            break;
        }
        if offset < e.new.end {
            return e.orig.start;
        }
        shift = e.orig.end as isize - e.new.end as isize;
    }
    offset.saturating_add_signed(shift)
}

fn describe(e: &ExpandError) -> String {
    e.to_string()
}

fn first_line(msg: &str) -> String {
    msg.trim()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
