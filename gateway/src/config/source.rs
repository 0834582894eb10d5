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
//!
//! Memory: the span-keeping document costs ~20× the text (a 1.9 MB registry
//! of 10k homes is a 41 MiB DOM), and glibc keeps such a peak as resident
//! memory for the life of the daemon. So the DOM is built only when needed:
//! a file without `${` that deserializes cleanly never builds it. A file made
//! of `[[entry]]` blocks (the registry) is read one block at a time, and an
//! error or warning inside a block re-parses only that block for its span.
//! Anything the block reader does not handle exactly (multi-line strings,
//! top-level keys, foreign headers, any error) takes the whole-file path.

use super::env::{expand, ExpandError};
use super::ConfigError;
use serde::de::{DeserializeOwned, IntoDeserializer};
use std::cell::OnceCell;
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

/// A config file and everything needed to point into it.
pub(crate) struct Source {
    /// Path as shown in messages.
    pub path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
    /// The whole-file span-keeping parse, built on first need (see the module docs).
    doc: OnceCell<Result<ImDocument<String>, ConfigError>>,
    /// The file's `[[entry]]` blocks, when it is made of nothing else.
    blocks: OnceCell<Option<Vec<Block>>>,
}

/// One `[[key]]` block of the text: the header line up to the next `[[...]]` header.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    key: String,
    range: Range<usize>,
}

/// Errors and warnings found so far (every check appends here; kept apart
/// from the checks so they can call each other without a cycle).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// An environment lookup (the process environment in production, a map in tests).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Source {
    /// Wraps a file's text; nothing is parsed until it is needed.
    pub fn new(path: &Path, text: String) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path: path.to_path_buf(),
            text,
            line_starts,
            doc: OnceCell::new(),
            blocks: OnceCell::new(),
        }
    }

    /// The whole-file document, or the syntax error that prevents it.
    fn dom(&self) -> &Result<ImDocument<String>, ConfigError> {
        self.doc.get_or_init(|| {
            ImDocument::parse(self.text.clone()).map_err(|e| {
                let msg = first_line(e.message());
                self.error(e.span(), format!("TOML syntax error: {msg}"))
            })
        })
    }

    /// The whole-file document, if it parses.
    fn doc(&self) -> Option<&ImDocument<String>> {
        self.dom().as_ref().ok()
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
        if let Some(span) = self.block_span(path) {
            return Some(span);
        }
        span_in(self.doc()?, path)
    }

    /// The span of `[key, i, ...]` found by parsing only the i-th `[[key]]` block.
    fn block_span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let (Some(Seg::K(key)), Some(Seg::I(i))) = (path.first(), path.get(1)) else {
            return None;
        };
        let blocks = self.blocks.get()?.as_ref()?;
        let block = blocks.iter().filter(|b| b.key == *key).nth(*i)?;
        let doc = ImDocument::parse(self.text.get(block.range.clone())?.to_string()).ok()?;
        let mut local = path.to_vec();
        local[1] = Seg::I(0);
        let span = span_in(&doc, &local)?;
        Some(span.start + block.range.start..span.end + block.range.start)
    }

    /// The decoded string at `path` as written (before `${ENV}` expansion).
    pub fn raw_str(&self, path: &[Seg]) -> Option<&str> {
        let mut node = Node::Item(self.doc()?.as_item());
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
        if !self.text.contains("${") {
            if let Ok(v) = toml::from_str::<T>(&self.text) {
                return Some(v);
            }
        }
        self.deserialize_dom(env, entries, errors)
    }

    /// [`Source::deserialize`] for a file of `[[entry]]` blocks (the registry):
    /// reads it block by block and joins the parts with `append`, so a large
    /// ledger never becomes one document in memory.
    pub fn deserialize_blocks<T: DeserializeOwned + Default>(
        &self,
        env: EnvLookup,
        entries: &[EntryCheck],
        append: fn(&mut T, T),
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        if !self.text.contains("${") {
            let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
            let blocks = self
                .blocks
                .get_or_init(|| split_blocks(&self.text, &keys))
                .as_ref();
            if let Some(blocks) = blocks {
                let mut all = T::default();
                let ok = blocks.iter().all(|b| {
                    let part = self.text.get(b.range.clone()).unwrap_or_default();
                    match toml::from_str::<T>(part) {
                        Ok(one) => {
                            append(&mut all, one);
                            true
                        }
                        Err(_) => false,
                    }
                });
                if ok {
                    return Some(all);
                }
            }
        }
        self.deserialize(env, entries, errors)
    }

    /// The exact path: whole-file DOM, `${ENV}` expansion, every error with its span.
    fn deserialize_dom<T: DeserializeOwned>(
        &self,
        env: EnvLookup,
        entries: &[EntryCheck],
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let doc = match self.dom() {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(e.clone());
                return None;
            }
        };
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

/// Span of the item at `path` in `doc`, or of its deepest existing ancestor that has one.
fn span_in(doc: &ImDocument<String>, path: &[Seg]) -> Option<Range<usize>> {
    let mut node = Node::Item(doc.as_item());
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

/// Cuts `text` into `[[key]]` blocks (`key` one of `keys`), or `None` when
/// the text holds anything for which reading the blocks one by one could
/// differ from reading the whole file: a multi-line string (a `[[` line in it
/// is not a header), a key before the first block, a header that is quoted,
/// of another key, or a plain table of a listed key. Sub-tables of the
/// current block (`[[households.residents]]`) stay in it.
fn split_blocks(text: &str, keys: &[&str]) -> Option<Vec<Block>> {
    if keys.is_empty() || text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim();
        if !t.starts_with('[') {
            if blocks.is_empty() && !(t.is_empty() || t.starts_with('#')) {
                return None;
            }
            continue;
        }
        let (array, name) = header(t)?;
        let top = name.split('.').next().unwrap_or(name);
        if array && name == top && keys.contains(&top) {
            if let Some(last) = blocks.last_mut() {
                last.range.end = start;
            }
            blocks.push(Block {
                key: top.to_string(),
                range: start..text.len(),
            });
        } else if name == top || blocks.last().map(|b| b.key.as_str()) != Some(top) {
            return None;
        }
    }
    (!blocks.is_empty()).then_some(blocks)
}

/// `[[a.b]]` → `(true, "a.b")`, `[a]` → `(false, "a")`; `None` for anything
/// but bare dotted keys (quotes, spaces inside, empty parts).
fn header(line: &str) -> Option<(bool, &str)> {
    let t = line.split('#').next()?.trim();
    let (array, inner) = if let Some(x) = t.strip_prefix("[[") {
        (true, x.strip_suffix("]]")?)
    } else {
        (false, t.strip_prefix('[')?.strip_suffix(']')?)
    };
    let bare = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    inner.split('.').all(bare).then_some((array, inner))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::Registry;

    const KEYS: &[&str] = &["grids", "households", "devices", "contacts"];

    fn blocks(text: &str) -> Option<Vec<(String, String)>> {
        split_blocks(text, KEYS).map(|bs| {
            bs.into_iter()
                .map(|b| (b.key, text[b.range].to_string()))
                .collect()
        })
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn entries() -> [EntryCheck; 4] {
        use crate::config::types::{Contact, Device, Grid, Household};
        [
            entry::<Grid>("grids"),
            entry::<Household>("households"),
            entry::<Device>("devices"),
            entry::<Contact>("contacts"),
        ]
    }

    #[test]
    fn blocks_keep_their_sub_tables_and_comments() {
        let text = "# ledger\n\n[[households]]\nid = \"h1\" # x\n[[households.residents]]\nname = \"A\"\n\n[[devices]] # a comment\r\nid = \"d1\"\n";
        let got = blocks(text).expect("splits");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "households");
        assert!(got[0].1.starts_with("[[households]]") && got[0].1.contains("residents"));
        assert_eq!(
            got[1],
            (
                "devices".into(),
                "[[devices]] # a comment\r\nid = \"d1\"\n".into()
            )
        );
    }

    #[test]
    fn anything_blocks_could_read_differently_is_refused() {
        for text in [
            // A `[[` line inside a multi-line string is not a header.
            "[[contacts]]\nid = \"\"\"\n[[devices]]\n\"\"\"\n",
            "[[contacts]]\nid = '''x'''\n",
            // A top-level key before the first block.
            "grids = []\n[[devices]]\nid = \"d\"\n",
            // A header of another key, a plain table of a listed key, a quoted key.
            "[[devices]]\nid = \"d\"\n[site]\nid = \"s\"\n",
            "[[devices]]\nid = \"d\"\n[households]\nx = 1\n",
            "[[\"devices\"]]\nid = \"d\"\n",
            // A sub-table of a key whose block is not the current one.
            "[[devices]]\nid = \"d\"\n[households.x]\ny = 1\n",
            // A line of a multi-line array that starts with `[`.
            "[[devices]]\nid = \"d\"\nx = [\n[1, 2],\n]\n",
            // Nothing but comments.
            "# empty\n",
        ] {
            assert_eq!(blocks(text), None, "{text:?}");
        }
    }

    /// Reading block by block gives exactly what the whole-file parse gives,
    /// for the shipped ledger, the e2e compound and one with nested tables.
    #[test]
    fn blocks_read_the_same_registry_as_the_whole_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut texts: Vec<String> = [
            "config/registry.toml",
            "tests/fixtures/compound/registry.toml",
        ]
        .iter()
        .map(|p| std::fs::read_to_string(root.join(p)).expect("read a shipped registry"))
        .collect();
        texts.push(
            "[[grids]]\nid = \"g\"\nname = \"G\"\n\n[[households]]\nid = \"h\"\naddress = \"1\"\ngrid = \"g\"\n[[households.residents]]\nname = \"A\"\nlives_alone = true\n[[households.residents]]\nname = \"B\"\n\n[[households]]\nid = \"h2\"\naddress = \"2\"\ngrid = \"g\"\n".to_string(),
        );
        for text in texts {
            let src = Source::new(Path::new("registry.toml"), text.clone());
            let mut errors = Vec::new();
            let got: Registry = src
                .deserialize_blocks(&no_env, &entries(), Registry::append, &mut errors)
                .expect("reads");
            assert!(errors.is_empty(), "{errors:?}");
            assert!(
                src.blocks.get().is_some_and(Option::is_some),
                "the block path was taken"
            );
            let whole: Registry = toml::from_str(&text).expect("whole file");
            assert_eq!(format!("{got:?}"), format!("{whole:?}"));
            assert!(src.doc.get().is_none(), "no whole-file DOM was built");
        }
    }

    /// A warning inside the 3rd block is placed by parsing that block alone:
    /// the whole file never becomes a DOM.
    #[test]
    fn a_span_inside_a_block_needs_only_that_block() {
        let text = "# x\n[[contacts]]\nid = \"a\"\nname = \"A\"\n\n[[contacts]]\nid = \"b\"\nname = \"B\"\n\n[[contacts]]\nname = \"C\"\nid = \"c\"\n";
        let src = Source::new(Path::new("registry.toml"), text.to_string());
        let got: Option<Registry> =
            src.deserialize_blocks(&no_env, &entries(), Registry::append, &mut Vec::new());
        assert_eq!(got.map(|r| r.contacts.len()), Some(3));
        let e = src.error_at(&[Seg::K("contacts"), Seg::I(2), Seg::K("id")], "w");
        assert_eq!((e.line, e.column), (Some(12), Some(6)));
        assert!(src.doc.get().is_none(), "no whole-file DOM was built");
    }

    /// A block that fails takes the whole-file path, so errors keep their
    /// exact text and position.
    #[test]
    fn a_bad_block_falls_back_to_the_exact_errors() {
        let text = "[[devices]]\nid = \"d1\"\nkind = \"smoke\"\nhousehold = \"h\"\n\n[[devices]]\nid = \"d2\"\nkind = \"smoke\"\nhousehold = \"h\"\ncolour = \"red\"\n";
        let src = Source::new(Path::new("registry.toml"), text.to_string());
        let mut errors = Vec::new();
        let got: Option<Registry> =
            src.deserialize_blocks(&no_env, &entries(), Registry::append, &mut errors);
        assert!(got.is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(10));
        assert!(errors[0].message.contains("colour"), "{errors:?}");
    }

    #[test]
    fn a_syntax_error_is_reported_once_with_its_line() {
        let src = Source::new(Path::new("rules.toml"), "a = 1\nb = \n".to_string());
        let mut errors = Vec::new();
        let got: Option<toml::Table> = src.deserialize(&no_env, &[], &mut errors);
        assert!(got.is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(2));
        assert!(
            errors[0].message.starts_with("TOML syntax error"),
            "{errors:?}"
        );
    }
}
