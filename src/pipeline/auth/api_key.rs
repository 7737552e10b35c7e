//! `auth.api_key`: a keys file (one key per line, optionally `KEY NAME`)
//! and the check of a request's key header against it. Keys are compared
//! in constant time, and every key is compared (no early exit on the
//! first match), so the time taken says nothing about how close a guess
//! was or which key it matched.

use subtle::{ConditionallySelectable, ConstantTimeEq};

#[derive(Clone, PartialEq, Eq)]
struct Key {
    key: Box<[u8]>,
    name: Box<str>,
}

/// The keys of a `keys` file.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<Key>,
}

/// Names only: a printed config must not show a key.
impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

impl ApiKeys {
    /// Reads a keys file: `KEY` or `KEY NAME` per line, `#` comments and
    /// blank lines skipped; a problem names its line.
    pub fn parse(text: &str) -> Result<ApiKeys, String> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in super::file_lines(text) {
            let (key, name) = match line.split_once(char::is_whitespace) {
                Some((k, name)) => (k, name.trim()),
                None => (line, ""),
            };
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {n}: a key must be visible ASCII"));
            }
            if name.chars().any(char::is_control) {
                return Err(format!(
                    "line {n}: a key's name must not contain control characters"
                ));
            }
            if keys.iter().any(|k| &*k.key == key.as_bytes()) {
                return Err(format!("line {n}: the same key appears twice"));
            }
            keys.push(Key {
                key: key.as_bytes().into(),
                name: name.into(),
            });
        }
        if keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(ApiKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented` is (empty for a key without one),
    /// if it is one.
    pub fn verify(&self, presented: &[u8]) -> Option<&str> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, k) in self.keys.iter().enumerate() {
            // Slices of different lengths compare unequal at once: only
            // a key's length can be learnt that way, not its bytes.
            let eq = k.key.ct_eq(presented);
            index.conditional_assign(&(i as u32), eq);
            found |= eq;
        }
        bool::from(found).then(|| &*self.keys[index as usize].name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_with_and_without_names() {
        let keys = ApiKeys::parse("# keys\nk-123 billing service\n\nk-456\n").unwrap();
        assert_eq!(keys.verify(b"k-123"), Some("billing service"));
        assert_eq!(keys.verify(b"k-456"), Some(""));
        assert_eq!(keys.verify(b"k-12"), None);
        assert_eq!(keys.verify(b"k-1234"), None);
        assert_eq!(keys.verify(b""), None);
    }

    #[test]
    fn printed_keys_show_names_only() {
        let keys = ApiKeys::parse("secret-1 one\nsecret-2\n").unwrap();
        assert_eq!(format!("{keys:?}"), r#"["one", ""]"#);
    }

    #[test]
    fn problems_name_their_line() {
        assert_eq!(
            ApiKeys::parse("a\nb\na x\n").unwrap_err(),
            "line 3: the same key appears twice"
        );
        assert_eq!(ApiKeys::parse("# none\n\n").unwrap_err(), "holds no key");
        assert_eq!(
            ApiKeys::parse("ok\nk\u{e9}y\n").unwrap_err(),
            "line 2: a key must be visible ASCII"
        );
    }
}
