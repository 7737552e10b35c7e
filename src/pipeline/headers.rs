//! The header-edit filter: a route's `request_headers` and
//! `response_headers` (`set`, `add`, `remove`), with variables in values.
//! The lines to append are one template, so a route whose values are
//! fixed appends them with one copy.

use super::vars::{Template, Vars};
use crate::http::encode::FieldEdits;

/// Header changes on one side: names whose incoming fields are dropped
/// (`remove`, and `set`, which replaces) and `Name: value` lines appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Lower-case names whose incoming fields are dropped.
    pub drop: Vec<Vec<u8>>,
    /// `Name: value\r\n` lines appended, values possibly with variables.
    pub lines: Template,
}

impl HeaderEdits {
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop.iter().any(|d| name.eq_ignore_ascii_case(d))
    }

    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.lines.is_empty()
    }

    /// Adds a `Name: value` line (`replace`: drop the incoming field).
    pub fn push(&mut self, name: &str, value: &Template, replace: bool) {
        if replace {
            self.drop.push(name.to_ascii_lowercase().into_bytes());
        }
        let mut line = Template::text(format!("{name}: ").as_bytes());
        line.append(value);
        line.append(&Template::text(b"\r\n"));
        self.lines.append(&line);
    }

    /// These edits with the request's values, as the head encoder takes them.
    pub fn with<'a>(&'a self, vars: &'a Vars<'a>) -> Rendered<'a> {
        Rendered { edits: self, vars }
    }
}

/// Header edits bound to one request's values.
pub struct Rendered<'a> {
    edits: &'a HeaderEdits,
    vars: &'a Vars<'a>,
}

impl FieldEdits for Rendered<'_> {
    fn drops(&self, name: &[u8]) -> bool {
        self.edits.drops(name)
    }

    fn append(&self, out: &mut Vec<u8>) {
        self.edits.lines.render(out, self.vars);
    }
}
