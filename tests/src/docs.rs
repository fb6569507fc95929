//! The documentation as tests read it: the pages (README.md and the book,
//! docs/*.md), their fenced code blocks with the attributes of their info
//! strings, and the loose comparison a documented result is held to.
//!
//! A block's info string is its language, then attributes after commas:
//! ```` ```sh,runnable ````, ```` ```text,output ````, ```` ```json,plugin-config ````.
//! mdBook renders it as its language (the attributes become CSS classes).
//!
//! A documented result is compared loosely ([`output_matches`]): `…` stands
//! for anything; whitespace does not count; JSON is compared as JSON.

use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;

use crate::proc::workspace_root;

/// README.md, then the book's pages (docs/*.md) in name order.
pub fn pages() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut book: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    book.sort();
    files.extend(book);
    files
}

/// One fenced code block of a page.
#[derive(Clone, Debug)]
pub struct CodeBlock {
    /// The page, relative to the workspace (`docs/sidecar.md`).
    pub file: PathBuf,
    /// The line of the opening fence (1-based); the code starts on the next.
    pub line: usize,
    /// The info string's first word (`sh`, `json`, …; empty if none).
    pub lang: String,
    /// The words after it (`runnable`, `output`, `file=seal-cookie.mjs`).
    pub attributes: Vec<String>,
    pub text: String,
}

impl CodeBlock {
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }

    /// The value of a `name=value` attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }

    /// `docs/sidecar.md:42`: where the block (its opening fence) is.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// Where the block's `n`th line (1-based) is.
    pub fn location_of_line(&self, n: usize) -> String {
        format!("{}:{}", self.file.display(), self.line + n)
    }
}

/// The fenced code blocks of `file` (indented blocks have no info string
/// and are left out).
pub fn code_blocks(file: &Path) -> Vec<CodeBlock> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let relative = file
        .strip_prefix(workspace_root())
        .unwrap_or(file)
        .to_path_buf();
    code_blocks_of(&relative, &text)
}

/// The fenced code blocks of `markdown`, as if it were the page `file`.
pub fn code_blocks_of(file: &Path, markdown: &str) -> Vec<CodeBlock> {
    let mut blocks = Vec::new();
    let mut current: Option<CodeBlock> = None;
    for (event, range) in Parser::new_ext(markdown, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let mut words = info.split(',').map(|w| w.trim().to_string());
                let lang = words.next().unwrap_or_default();
                let line = markdown[..range.start].matches('\n').count() + 1;
                current = Some(CodeBlock {
                    file: file.to_path_buf(),
                    line,
                    lang,
                    attributes: words.filter(|w| !w.is_empty()).collect(),
                    text: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(block) = current.as_mut() {
                    block.text.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(block) = current.take() {
                    blocks.push(block);
                }
            }
            _ => {}
        }
    }
    blocks
}

// ── JSON with `…` ───────────────────────────────────────────────────────

/// JSON as the docs write it, where `…` stands for what does not matter:
/// a bare `…` as a value is any value, as a member of an object any other
/// members, as an element of an array any elements; inside a string it is
/// any characters (`"eyJ…"`).
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    Any,
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// A string; with `…` in it, a glob.
    Str(String),
    /// The members, and whether other members may be there (a bare `…`).
    Object(Vec<(String, Pattern)>, bool),
    Array(Vec<Pattern>),
}

pub const ELLIPSIS: char = '…';

/// Reads one JSON pattern from the start of `text` (after whitespace);
/// returns it and the number of bytes read.
pub fn parse_pattern(text: &str) -> Result<(Pattern, usize), String> {
    let mut p = PatternParser { text, at: 0 };
    let value = p.value()?;
    Ok((value, p.at))
}

/// Reads `text` as one JSON pattern, nothing after it.
pub fn parse_whole_pattern(text: &str) -> Result<Pattern, String> {
    let (pattern, used) = parse_pattern(text)?;
    let rest = text[used..].trim();
    if !rest.is_empty() {
        return Err(format!("after the JSON: {rest:?}"));
    }
    Ok(pattern)
}

struct PatternParser<'a> {
    text: &'a str,
    at: usize,
}

impl PatternParser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn error<T>(&self, what: &str) -> Result<T, String> {
        let near: String = self.rest().chars().take(30).collect();
        Err(format!("{what} at byte {}, near {near:?}", self.at))
    }

    fn value(&mut self) -> Result<Pattern, String> {
        match self.peek() {
            Some(ELLIPSIS) => {
                self.at += ELLIPSIS.len_utf8();
                Ok(Pattern::Any)
            }
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => Ok(Pattern::Str(self.string()?)),
            Some(_) => self.scalar(),
            None => self.error("a value expected"),
        }
    }

    fn object(&mut self) -> Result<Pattern, String> {
        self.eat('{');
        let mut members = Vec::new();
        let mut open = false;
        if self.eat('}') {
            return Ok(Pattern::Object(members, open));
        }
        loop {
            if self.peek() == Some(ELLIPSIS) {
                self.at += ELLIPSIS.len_utf8();
                open = true;
            } else {
                if self.peek() != Some('"') {
                    return self.error("a member name expected");
                }
                let name = self.string()?;
                if !self.eat(':') {
                    return self.error("`:` expected");
                }
                members.push((name, self.value()?));
            }
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(Pattern::Object(members, open));
            }
            return self.error("`,` or `}` expected");
        }
    }

    fn array(&mut self) -> Result<Pattern, String> {
        self.eat('[');
        let mut elements = Vec::new();
        if self.eat(']') {
            return Ok(Pattern::Array(elements));
        }
        loop {
            elements.push(self.value()?);
            if self.eat(',') {
                continue;
            }
            if self.eat(']') {
                return Ok(Pattern::Array(elements));
            }
            return self.error("`,` or `]` expected");
        }
    }

    /// A JSON string, unescaped (serde_json reads it).
    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let mut stream = serde_json::Deserializer::from_str(self.rest()).into_iter::<String>();
        match stream.next() {
            Some(Ok(s)) => {
                self.at += stream.byte_offset();
                Ok(s)
            }
            _ => self.error("a string expected"),
        }
    }

    fn scalar(&mut self) -> Result<Pattern, String> {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '}' | ']'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let pattern = match word {
            "null" => Pattern::Null,
            "true" => Pattern::Bool(true),
            "false" => Pattern::Bool(false),
            _ => match serde_json::from_str::<serde_json::Number>(word) {
                Ok(n) => Pattern::Number(n),
                Err(_) => return self.error("a value expected"),
            },
        };
        self.at += end;
        Ok(pattern)
    }
}

/// Whether `text` matches `pattern`, where `…` in the pattern stands for
/// any characters.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ELLIPSIS).collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether `value` is what `pattern` says; if not, where it differs.
pub fn json_matches(pattern: &Pattern, value: &Value) -> Result<(), String> {
    json_matches_at(pattern, value, "")
}

fn json_matches_at(pattern: &Pattern, value: &Value, path: &str) -> Result<(), String> {
    let differs = || {
        Err(format!(
            "at `{}`: {value} is not {}",
            if path.is_empty() { "." } else { path },
            show(pattern)
        ))
    };
    match (pattern, value) {
        (Pattern::Any, _) => Ok(()),
        (Pattern::Null, Value::Null) => Ok(()),
        (Pattern::Bool(a), Value::Bool(b)) if a == b => Ok(()),
        (Pattern::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (Pattern::Str(p), Value::String(s)) if glob_matches(p, s) => Ok(()),
        (Pattern::Object(members, open), Value::Object(map)) => {
            for (name, p) in members {
                match map.get(name) {
                    Some(v) => json_matches_at(p, v, &format!("{path}.{name}"))?,
                    None => return Err(format!("at `{path}.{name}`: missing (in {value})")),
                }
            }
            if !open {
                let extra: Vec<&String> = map
                    .keys()
                    .filter(|k| !members.iter().any(|(name, _)| name == *k))
                    .collect();
                if !extra.is_empty() {
                    return Err(format!(
                        "at `{}`: members not in the docs: {extra:?} (add them, or `…`)",
                        if path.is_empty() { "." } else { path }
                    ));
                }
            }
            Ok(())
        }
        (Pattern::Array(elements), Value::Array(values)) => {
            if array_matches(elements, values, path) {
                Ok(())
            } else {
                differs()
            }
        }
        _ => differs(),
    }
}

fn array_matches(elements: &[Pattern], values: &[Value], path: &str) -> bool {
    match elements.split_first() {
        None => values.is_empty(),
        Some((Pattern::Any, rest)) => {
            (0..=values.len()).any(|skip| array_matches(rest, &values[skip..], path))
        }
        Some((first, rest)) => match values.split_first() {
            Some((v, vs)) => {
                json_matches_at(first, v, &format!("{path}[]")).is_ok()
                    && array_matches(rest, vs, path)
            }
            None => false,
        },
    }
}

/// A pattern written back (for messages).
pub fn show(pattern: &Pattern) -> String {
    match pattern {
        Pattern::Any => "…".into(),
        Pattern::Null => "null".into(),
        Pattern::Bool(b) => b.to_string(),
        Pattern::Number(n) => n.to_string(),
        Pattern::Str(s) => Value::String(s.clone()).to_string(),
        Pattern::Object(members, open) => {
            let mut parts: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), show(v)))
                .collect();
            if *open {
                parts.push("…".into());
            }
            format!("{{{}}}", parts.join(", "))
        }
        Pattern::Array(elements) => {
            format!(
                "[{}]",
                elements.iter().map(show).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

// ── what a command printed, against what the docs say it prints ─────────

/// A piece of output: a JSON value, or a line of text.
#[derive(Debug)]
enum Expected {
    Json(Pattern),
    /// A line, whitespace collapsed; `…` in it stands for any characters.
    Line(String),
    /// A line that is only `…`: any number of pieces.
    Anything,
}

#[derive(Debug)]
enum Printed {
    Json(Value),
    Line(String),
}

fn collapse(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn expected_pieces(text: &str) -> Vec<Expected> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        rest = rest.trim_start();
        if rest.starts_with('{') || rest.starts_with('[') {
            if let Ok((pattern, used)) = parse_pattern(rest) {
                pieces.push(Expected::Json(pattern));
                rest = &rest[used..];
                continue;
            }
        }
        let end = rest.find('\n').unwrap_or(rest.len());
        let line = collapse(&rest[..end]);
        pieces.push(if line == ELLIPSIS.to_string() {
            Expected::Anything
        } else {
            Expected::Line(line)
        });
        rest = &rest[end..];
    }
    pieces
}

fn printed_pieces(text: &str) -> Vec<Printed> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        rest = rest.trim_start();
        if rest.starts_with('{') || rest.starts_with('[') {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            if let Some(Ok(value)) = stream.next() {
                pieces.push(Printed::Json(value));
                rest = &rest[stream.byte_offset()..];
                continue;
            }
        }
        let end = rest.find('\n').unwrap_or(rest.len());
        pieces.push(Printed::Line(collapse(&rest[..end])));
        rest = &rest[end..];
    }
    pieces
}

/// Whether `printed` is what `expected` (a documented output) says, read
/// loosely: both are cut into pieces (JSON values, wherever a line or what
/// is left of it starts with `{` or `[`, and lines of text; blank lines
/// and runs of whitespace do not count), and the pieces must match in
/// order: JSON as [`json_matches`] says, a line as [`glob_matches`] says,
/// and a line that is only `…` stands for any number of pieces. `Err`
/// says where they part.
pub fn output_matches(expected: &str, printed: &str) -> Result<(), String> {
    let expected = expected_pieces(expected);
    let printed = printed_pieces(printed);
    let mut why = Why::default();
    if pieces_match(&expected, &printed, &mut why) {
        Ok(())
    } else {
        Err(why.message)
    }
}

/// Why pieces did not match, when a `…` let them be tried several ways:
/// the first piece that differed in content (JSON against JSON, a line
/// against a line) says more than a JSON against a line, which says more
/// than running out of pieces.
#[derive(Default)]
struct Why {
    rank: u8,
    message: String,
}

impl Why {
    fn note(&mut self, rank: u8, message: String) {
        if self.message.is_empty() || rank > self.rank {
            self.rank = rank;
            self.message = message;
        }
    }
}

fn pieces_match(expected: &[Expected], printed: &[Printed], why: &mut Why) -> bool {
    match expected.split_first() {
        None => {
            if let Some(extra) = printed.first() {
                why.note(0, format!("printed more than documented, from: {extra:?}"));
            }
            printed.is_empty()
        }
        Some((Expected::Anything, rest)) => {
            (0..=printed.len()).any(|skip| pieces_match(rest, &printed[skip..], why))
        }
        Some((first, rest)) => {
            let Some((p, ps)) = printed.split_first() else {
                why.note(0, format!("documented but not printed: {first:?}"));
                return false;
            };
            let this = match (first, p) {
                (Expected::Json(pattern), Printed::Json(value)) => {
                    json_matches(pattern, value).map_err(|e| (2, e))
                }
                (Expected::Line(pattern), Printed::Line(line)) => {
                    if glob_matches(pattern, line) {
                        Ok(())
                    } else {
                        Err((2, format!("the line {line:?} is not {pattern:?}")))
                    }
                }
                (Expected::Json(pattern), Printed::Line(line)) => Err((
                    1,
                    format!(
                        "the line {line:?} where the docs have JSON {}",
                        show(pattern)
                    ),
                )),
                (Expected::Line(pattern), Printed::Json(value)) => Err((
                    1,
                    format!("JSON {value} where the docs have the line {pattern:?}"),
                )),
                (Expected::Anything, _) => Ok(()),
            };
            match this {
                Ok(()) => pieces_match(rest, ps, why),
                Err((rank, e)) => {
                    why.note(rank, e);
                    false
                }
            }
        }
    }
}

/// The value `pattern` stands for, its `…` filled from `base` (the value
/// at the same place); `Err` names a `…` that `base` cannot fill.
pub fn fill_from(pattern: &Pattern, base: &Value) -> Result<Value, String> {
    fill_at(pattern, Some(base), "")
}

fn fill_at(pattern: &Pattern, base: Option<&Value>, path: &str) -> Result<Value, String> {
    let from_base = || {
        base.cloned()
            .ok_or_else(|| format!("`…` at `{path}` stands for nothing the base config has"))
    };
    Ok(match pattern {
        Pattern::Any => from_base()?,
        Pattern::Null => Value::Null,
        Pattern::Bool(b) => Value::Bool(*b),
        Pattern::Number(n) => Value::Number(n.clone()),
        Pattern::Str(s) if s.contains(ELLIPSIS) => from_base()?,
        Pattern::Str(s) => Value::String(s.clone()),
        Pattern::Object(members, open) => {
            let mut map = serde_json::Map::new();
            if *open {
                if let Some(Value::Object(b)) = base {
                    map = b.clone();
                }
            }
            for (name, p) in members {
                let b = base.and_then(|b| b.get(name));
                map.insert(name.clone(), fill_at(p, b, &format!("{path}.{name}"))?);
            }
            Value::Object(map)
        }
        Pattern::Array(elements) if elements.contains(&Pattern::Any) => from_base()?,
        Pattern::Array(elements) => Value::Array(
            elements
                .iter()
                .enumerate()
                .map(|(i, p)| fill_at(p, base.and_then(|b| b.get(i)), &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    })
}
