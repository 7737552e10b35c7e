//! `auth.basic`: an htpasswd-style users file (`name:hash` per line) with
//! bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2 (`$argon2id$`, `$argon2i$`,
//! `$argon2d$`) hashes, checked against an `Authorization: Basic` value.
//! Other hash forms (crypt, MD5 `$apr1$`, SHA1 `{SHA}`, plain text) are
//! refused when the file is read.

use base64::Engine;

/// One user of the file.
#[derive(Clone, PartialEq, Eq)]
struct User {
    name: Box<str>,
    hash: Box<str>,
    kind: HashKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Bcrypt,
    Argon2,
}

/// The users of a `users` file.
#[derive(Clone, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
}

/// Names only: a printed config must not show a password hash.
impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|u| &u.name))
            .finish()
    }
}

impl Users {
    /// Reads a users file: `name:hash` per line, `#` comments and blank
    /// lines skipped; a problem names its line.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users: Vec<User> = Vec::new();
        for (n, line) in super::file_lines(text) {
            let Some((name, hash)) = line.split_once(':') else {
                return Err(format!("line {n}: expected `name:hash`"));
            };
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!(
                    "line {n}: a user name must be non-empty without control characters"
                ));
            }
            if users.iter().any(|u| &*u.name == name) {
                return Err(format!("line {n}: user `{name}` appears twice"));
            }
            let kind = hash_kind(hash).map_err(|m| format!("line {n}: user `{name}`: {m}"))?;
            users.push(User {
                name: name.into(),
                hash: hash.into(),
                kind,
            });
        }
        Ok(Users { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user name the `Authorization` value `value` proves, if it
    /// does (slow: a password hash is computed).
    pub fn verify(&self, value: &[u8]) -> Option<&str> {
        let (name, password) = basic_credentials(value)?;
        let user = self.users.iter().find(|u| u.name.as_bytes() == name);
        // An unknown name costs about what a known one does, so the time
        // taken does not say which names exist.
        let checked = user.or(self.users.first())?;
        let ok = match checked.kind {
            HashKind::Bcrypt => bcrypt::verify(&password, &checked.hash).unwrap_or(false),
            HashKind::Argon2 => verify_argon2(&password, &checked.hash),
        };
        user.filter(|_| ok).map(|u| &*u.name)
    }
}

fn hash_kind(hash: &str) -> Result<HashKind, String> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        hash.parse::<bcrypt::HashParts>()
            .map_err(|e| format!("bad bcrypt hash: {e}"))?;
        return Ok(HashKind::Bcrypt);
    }
    if hash.starts_with("$argon2") {
        let h = argon2::PasswordHash::new(hash).map_err(|e| format!("bad argon2 hash: {e}"))?;
        let usable = argon2::Algorithm::new(h.algorithm.as_str()).is_ok()
            && argon2::Params::try_from(&h).is_ok()
            && h.salt.is_some()
            && h.hash.is_some();
        if !usable {
            return Err("bad argon2 hash: expected $argon2id$v=19$m=..,t=..,p=..$SALT$HASH".into());
        }
        return Ok(HashKind::Argon2);
    }
    Err("unsupported hash (bcrypt `$2a$`/`$2b$`/`$2y$` or argon2 `$argon2id$` only)".into())
}

fn verify_argon2(password: &[u8], hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password, &h)
            .is_ok()
    })
}

/// The name and password of a `Basic` credentials value.
fn basic_credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = crate::http::fields::trim_ows(value);
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(crate::http::fields::trim_ows(rest))
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Whether an `Authorization` value is of the `Basic` scheme.
pub fn is_basic(value: &[u8]) -> bool {
    let value = crate::http::fields::trim_ows(value);
    value.len() > 6 && value[..6].eq_ignore_ascii_case(b"basic ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b}").into_bytes()
    }

    #[test]
    fn reads_bcrypt_and_argon2_users() {
        let bc = bcrypt::hash("pw1", 4).unwrap();
        let ar = {
            use argon2::PasswordHasher;
            let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
            argon2::Argon2::default()
                .hash_password(b"pw2", &salt)
                .unwrap()
                .to_string()
        };
        let text = format!("# users\n\nalice:{bc}\n  bob:{ar}\n");
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(format!("{users:?}"), r#"["alice", "bob"]"#);
        assert_eq!(users.verify(&header("alice", "pw1")), Some("alice"));
        assert_eq!(users.verify(&header("bob", "pw2")), Some("bob"));
        assert_eq!(users.verify(&header("bob", "pw1")), None);
        assert_eq!(users.verify(&header("carol", "pw1")), None);
        assert_eq!(users.verify(b"Bearer x"), None);
        assert_eq!(users.verify(b"Basic !!!"), None);
    }

    #[test]
    fn other_hashes_are_refused_with_their_line() {
        for (text, want) in [
            ("a:$apr1$xyz$abc\n", "line 1: user `a`: unsupported hash"),
            ("# c\nb:{SHA}abc=\n", "line 2: user `b`: unsupported hash"),
            ("\n\nc:plain\n", "line 3: user `c`: unsupported hash"),
            ("no colon\n", "line 1: expected `name:hash`"),
            ("d:$2b$04$short\n", "line 1: user `d`: bad bcrypt hash"),
            (
                "e:$argon2id$nonsense\n",
                "line 1: user `e`: bad argon2 hash",
            ),
        ] {
            let e = Users::parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn recognises_the_scheme() {
        assert!(is_basic(b"Basic abc"));
        assert!(is_basic(b"basic abc"));
        assert!(!is_basic(b"Bearer abc"));
    }
}
