//! Where in the file a problem is: the config is read from a plain
//! `toml::Table`, which has no positions, so when there is something to
//! report the text is parsed once more with spans and each key path is
//! looked up in that. Array entries with a `name` get it in the path.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::walk::ConfigError;

pub struct Locator<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

impl<'i> Locator<'i> {
    /// None if the text does not parse (it did once, so it will).
    pub fn new(text: &'i str) -> Option<Self> {
        let root = DeTable::parse(text).ok()?;
        Some(Locator { text, root })
    }

    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    /// Sets `e.line` to the line of the deepest part of its path that is
    /// in the file (a missing key gets its table's line), and shows the
    /// names of named array entries in its path.
    pub fn place(&self, e: &mut ConfigError) {
        let mut shown = String::new();
        let mut line = None;
        let mut value: Option<&DeValue<'_>> = None;
        let mut table = Some(self.root.get_ref());
        let mut rest = e.path.as_str();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let Some((index, after)) = after.split_once(']') else {
                    break;
                };
                let item = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| value?.as_array()?.get(i));
                let Some(item) = item else {
                    break;
                };
                shown.push_str(&rest[..index.len() + 2]);
                if let Some(name) = item
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.get("name"))
                    .and_then(|n| n.get_ref().as_str())
                {
                    shown.push_str(&format!(" {name:?}"));
                }
                line = Some(self.line(item.span().start));
                value = Some(item.get_ref());
                table = item.get_ref().as_table();
                rest = after;
                continue;
            }
            let rest_key = rest.strip_prefix('.').unwrap_or(rest);
            let Some((key, item)) = table.and_then(|t| longest_key(t, rest_key)) else {
                break;
            };
            shown.push_str(&rest[..rest.len() - rest_key.len() + key.get_ref().len()]);
            line = Some(self.line(key.span().start));
            value = Some(item.get_ref());
            table = item.get_ref().as_table();
            rest = &rest_key[key.get_ref().len()..];
        }
        shown.push_str(rest);
        e.path = shown;
        e.line = line;
    }
}

type Entry<'t, 'i> = (
    &'t Spanned<toml::de::DeString<'i>>,
    &'t Spanned<DeValue<'i>>,
);

/// The key of `table` that `path` starts with (followed by its end, `.`
/// or `[`), the longest when several are (keys may contain dots).
fn longest_key<'t, 'i>(table: &'t DeTable<'i>, path: &str) -> Option<Entry<'t, 'i>> {
    table
        .iter()
        .filter(|(k, _)| {
            let k = k.get_ref().as_ref();
            path.strip_prefix(k)
                .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
        })
        .max_by_key(|(k, _)| k.get_ref().len())
}

/// A TOML parse error's message, with the key or table it is about when
/// the parser says only "duplicate key".
pub fn syntax_message(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let message = message.trim_end();
    let Some(span) = span.filter(|_| message == "duplicate key") else {
        return format!("TOML syntax error: {message}");
    };
    let key = text.get(span.clone()).unwrap_or("").trim();
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') {
        let header = line.split('#').next().unwrap_or(line).trim();
        if header == "[[filters]]" {
            // TOML has one `filters` key: the switch or the rules.
            return "duplicate table [[filters]]: `filters = \"...\"` at the top level and \
                    `[[filters]]` rules cannot both be written; with rules, add an entry \
                    `[[filters]]` `include = \"default\"` for the default set"
                .to_string();
        }
        return format!("duplicate table {header}");
    }
    match enclosing_header(&text[..line_start]) {
        Some(header) => format!("duplicate key `{key}` in {header}"),
        None => format!("duplicate key `{key}`"),
    }
}

/// The last table header in `before`, e.g. `[[listeners]]`.
fn enclosing_header(before: &str) -> Option<&str> {
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split('#').next().unwrap_or(l).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[[listeners]]
name = "main"
bind = "x"

[[routes]]
path_prefix = "/"

[[routes]]
name = "api"
upstream = "app"
respond = { status = 99 }

[upstreams."a.b"]
servers = [
  "127.0.0.1:1",
  { addr = "x" },
]
"#;

    fn placed(path: &str) -> String {
        let mut e = ConfigError::new(path, "m");
        Locator::new(TEXT).expect("parses").place(&mut e);
        e.to_string()
    }

    #[test]
    fn paths_get_lines_and_names() {
        assert_eq!(
            placed("listeners[0].bind"),
            r#"line 3: listeners[0] "main".bind: m"#
        );
        assert_eq!(
            placed("routes[0].path_prefix"),
            "line 6: routes[0].path_prefix: m"
        );
        assert_eq!(
            placed("routes[1].upstream"),
            r#"line 10: routes[1] "api".upstream: m"#
        );
        assert_eq!(
            placed("routes[1].respond.status"),
            r#"line 11: routes[1] "api".respond.status: m"#
        );
        assert_eq!(
            placed("upstreams.a.b.servers[1].addr"),
            "line 16: upstreams.a.b.servers[1].addr: m"
        );
        assert_eq!(
            placed("upstreams.a.b.servers[0]"),
            "line 15: upstreams.a.b.servers[0]: m"
        );
    }

    #[test]
    fn missing_keys_get_their_tables_line() {
        assert_eq!(
            placed("routes[0].upstream"),
            "line 5: routes[0].upstream: m"
        );
        assert_eq!(
            placed("routes[1].redirect.to"),
            r#"line 8: routes[1] "api".redirect.to: m"#
        );
        assert_eq!(placed("admin.bind"), "admin.bind: m");
        assert_eq!(placed(""), "m");
    }

    #[test]
    fn duplicates_name_the_table_or_key() {
        let text = "[upstreams.app]\nservers = []\n\n[upstreams.app] # again\n";
        let e = text.parse::<toml::Table>().expect_err("duplicate");
        assert_eq!(
            syntax_message(text, e.message(), e.span()),
            "duplicate table [upstreams.app]"
        );
        let text = "[[listeners]]\nname = \"a\"\nname = \"b\"\n";
        let e = text.parse::<toml::Table>().expect_err("duplicate");
        assert_eq!(
            syntax_message(text, e.message(), e.span()),
            "duplicate key `name` in [[listeners]]"
        );
        assert_eq!(
            syntax_message("", "expected `]`", None),
            "TOML syntax error: expected `]`"
        );
    }
}
