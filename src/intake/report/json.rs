//! Reading JSON reports without ever echoing their contents.
//!
//! serde_json's data errors quote the offending value (`invalid type: string
//! "AKIA…"`), and a report's values are secrets. So reports are parsed into a
//! [`Value`] (syntax errors name only the line and column), and walked with
//! [`Node`], whose errors name the field path and the JSON type found, never
//! the value.

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::ReportError;

/// Parse `text` as one JSON document; a syntax error names the line and column.
pub(super) fn parse(format: &'static str, text: &str) -> Result<Value, ReportError> {
    serde_json::from_str(text).map_err(|e| syntax_error(format, &e, None))
}

/// Walk the top-level array of `text` one element at a time: each element is
/// parsed into its own small [`Value`], handed to `each` as the node `[i]`,
/// and freed before the next is read, so a 100,000-record report never
/// exists as one tree (issue 21: the tree was most of the peak memory).
///
/// Errors are those of [`parse`] then a walk from [`Walk::root`], in the same
/// order: a syntax error anywhere wins over a field error (after the first
/// field error the rest is still read, to find one, but not converted), and a
/// top level that is not an array is "expected an array" at the top level.
pub(super) fn each_item(
    format: &'static str,
    text: &str,
    mut each: impl for<'v> FnMut(Node<'v>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut failed: Option<ReportError> = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let read = de
        .deserialize_any(EachItem {
            format,
            each: &mut each,
            failed: &mut failed,
        })
        .and_then(|()| de.end());
    if let Err(e) = read {
        return Err(syntax_error(format, &e, None));
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct EachItem<'f, F> {
    format: &'static str,
    each: &'f mut F,
    failed: &'f mut Option<ReportError>,
}

impl<F> EachItem<'_, F> {
    /// The top level is not an array: the walk's own error for its kind.
    fn not_an_array(self, found: Value) {
        if let Err(e) = Walk::new(self.format).root(&found).items() {
            *self.failed = Some(e);
        }
    }
}

impl<'de, F> Visitor<'de> for EachItem<'_, F>
where
    F: for<'v> FnMut(Node<'v>) -> Result<(), ReportError>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while self.failed.is_none() {
            let Some(v) = seq.next_element::<Value>()? else {
                return Ok(());
            };
            let node = Node {
                v: &v,
                format: self.format,
                path: format!("[{i}]"),
            };
            if let Err(e) = (self.each)(node) {
                *self.failed = Some(e);
            }
            i += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_an_array(Value::Object(serde_json::Map::new()));
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_array(Value::String(String::new()));
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_array(Value::Bool(false));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.not_an_array(Value::from(v));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.not_an_array(Value::from(v));
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_array(Value::from(0.5));
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.not_an_array(Value::Null);
        Ok(())
    }
}

/// A serde_json syntax error as a [`ReportError`]. `line_offset` is the line
/// of a JSON-lines record (its own line/column are within the record).
pub(super) fn syntax_error(
    format: &'static str,
    e: &serde_json::Error,
    record_line: Option<usize>,
) -> ReportError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => {
            "the JSON ends early: the report is truncated (was the scanner interrupted, or the file copied while it was written?)".to_owned()
        }
        // Syntax and I/O messages are fixed texts ("expected `,` or `]`"),
        // never quoting the input.
        Category::Syntax | Category::Io => format!(
            "not valid JSON: {}; pass the report file the scanner wrote, not its console output",
            strip_position(e)
        ),
        // Data errors quote values: say only that the shape is wrong.
        Category::Data => "a value of the wrong type".to_owned(),
    };
    let at = match record_line {
        Some(l) => format!("line {l}, column {}", e.column()),
        None => format!("line {}, column {}", e.line(), e.column()),
    };
    ReportError::Malformed {
        format,
        at,
        reason: what,
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The JSON type of a value, for "expected …, found …" messages.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value and its path in the report (`[2].locations[0].uri`).
#[derive(Clone)]
pub(super) struct Node<'a> {
    pub v: &'a Value,
    format: &'static str,
    path: String,
}

/// Where walks start.
pub(super) struct Walk {
    format: &'static str,
}

impl Walk {
    pub fn new(format: &'static str) -> Self {
        Walk { format }
    }

    pub fn root<'a>(&self, v: &'a Value) -> Node<'a> {
        Node {
            v,
            format: self.format,
            path: String::new(),
        }
    }
}

impl<'a> Node<'a> {
    /// This node (lets `x.req("a")?.node()` read as a walk).
    pub fn node(&self) -> Node<'a> {
        self.clone()
    }

    pub fn path(&self) -> String {
        if self.path.is_empty() {
            "the top level".to_owned()
        } else {
            format!("`{}`", self.path.trim_start_matches('.'))
        }
    }

    pub fn error(&self, reason: impl Into<String>) -> ReportError {
        ReportError::Malformed {
            format: self.format,
            at: self.path(),
            reason: reason.into(),
        }
    }

    fn expected(&self, what: &str) -> ReportError {
        self.error(format!("expected {what}, found {}", kind(self.v)))
    }

    fn child(&self, key: &str, v: &'a Value) -> Node<'a> {
        Node {
            v,
            format: self.format,
            path: format!("{}.{key}", self.path),
        }
    }

    /// The field `key` when present and not null (the node must be an object).
    pub fn get(&self, key: &str) -> Result<Option<Node<'a>>, ReportError> {
        let obj = self
            .v
            .as_object()
            .ok_or_else(|| self.expected("an object"))?;
        Ok(obj
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| self.child(key, v)))
    }

    /// The field `key`, which must be present.
    pub fn req(&self, key: &str) -> Result<Node<'a>, ReportError> {
        self.get(key)?
            .ok_or_else(|| self.child(key, self.v).error("missing field"))
    }

    pub fn str(&self) -> Result<&'a str, ReportError> {
        self.v.as_str().ok_or_else(|| self.expected("a string"))
    }

    pub fn u64(&self) -> Result<u64, ReportError> {
        self.v
            .as_u64()
            .ok_or_else(|| self.expected("a non-negative integer"))
    }

    pub fn items(&self) -> Result<Vec<Node<'a>>, ReportError> {
        let arr = self.v.as_array().ok_or_else(|| self.expected("an array"))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| Node {
                v,
                format: self.format,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    pub fn entries(&self) -> Result<Vec<(&'a str, Node<'a>)>, ReportError> {
        let obj = self
            .v
            .as_object()
            .ok_or_else(|| self.expected("an object"))?;
        Ok(obj
            .iter()
            .map(|(k, v)| (k.as_str(), self.child(&format!("\"{k}\""), v)))
            .collect())
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, ReportError> {
        self.req(key)?.str()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ReportError> {
        match self.get(key)? {
            Some(c) => c.str().map(Some),
            None => Ok(None),
        }
    }

    /// An optional string that counts as absent when empty (gitleaks writes `""`).
    pub fn opt_nonempty(&self, key: &str) -> Result<Option<String>, ReportError> {
        Ok(self
            .opt_str(key)?
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    pub fn req_u64(&self, key: &str) -> Result<u64, ReportError> {
        self.req(key)?.u64()
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ReportError> {
        match self.get(key)? {
            Some(c) => c.u64().map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn data_errors_name_path_and_type_never_the_value() {
        let v: Value = serde_json::from_str(r#"{"a":[{"b":"CANARY-123"}]}"#).unwrap();
        let w = Walk::new("test");
        let root = w.root(&v);
        let a = root.req("a").unwrap();
        let items = a.node().items().unwrap();
        let e = items[0].node().req_u64("b").unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            "test report is malformed at `a[0].b`: expected a non-negative integer, found a string"
        );
        let e = items[0].node().req("c").err().unwrap();
        assert_eq!(
            e.to_string(),
            "test report is malformed at `a[0].c`: missing field"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column_and_truncation_is_named() {
        let e = parse("test", "{\n \"a\": \"CANARY-1").unwrap_err();
        let t = e.to_string();
        assert!(t.contains("line 2"), "{t}");
        assert!(t.contains("truncated"), "{t}");
        assert!(!t.contains("CANARY"), "{t}");
        let e = parse("test", "[1,,2]").unwrap_err().to_string();
        assert!(e.contains("line 1, column 4"), "{e}");
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
