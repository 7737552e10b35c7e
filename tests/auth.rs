//! `auth` per route over real sockets: basic (bcrypt and argon2 users),
//! api_key and jwt (ES256, EdDSA) with good, bad, missing, expired and
//! forged credentials; the exact `WWW-Authenticate` of each 401; what the
//! upstream sees (the identity header, never the credentials unless
//! forwarded, never a client's forged identity); rate limits before
//! auth; the files read again on reload, and a broken one refused with
//! its key path by reload and by `--check`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ringress::Config;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/auth")
        .join(name)
        .display()
        .to_string()
}

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
}

fn get_with(headers: &str) -> Vec<u8> {
    request("GET", "/", headers)
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {b}\r\n")
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

fn argon2_hash(password: &str) -> String {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(b"ringress-salt-16").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2")
        .to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed by the key in `pem_file` with `alg`, named `kid`.
fn token(claims: &serde_json::Value, alg: Algorithm, kid: Option<&str>, pem_file: &str) -> String {
    let pem = std::fs::read(data(pem_file)).expect("key file");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(&pem),
        other => panic!("no test key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "ringress-tests";

/// Claims that pass the jwt route's checks, with `extra` laid over them.
fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "sub": "user-42",
        "tenant": "acme",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn es256(extra: serde_json::Value) -> String {
    token(
        &claims(extra),
        Algorithm::ES256,
        Some("ec1"),
        "ec-private.pem",
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Asserts a 401 with exactly this challenge, its length and its body.
fn assert_refused(r: &Response, challenge: &str, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.raw_head);
    assert_eq!(
        r.header("www-authenticate"),
        Some(challenge),
        "{what}: {}",
        r.raw_head
    );
    assert_eq!(r.header("content-length"), Some("13"), "{what}");
    assert_eq!(r.body_str(), "Unauthorized\n", "{what}");
}

/// The problems of a config that must be refused.
fn refused(toml: &str) -> String {
    let Err(errors) = Config::from_toml_str(toml) else {
        panic!("accepted:\n{toml}");
    };
    errors.to_string()
}

fn basic_users(dir: &Path) -> String {
    let text = format!(
        "# staff\nalice:{}\n\nbob:{}\n",
        bcrypt_hash("wonderland"),
        argon2_hash("builder")
    );
    write(dir, "users", &text)
}

#[test]
fn basic_auth_with_bcrypt_and_argon2_users() {
    let dir = TempPath::unique_dir("auth");
    let users = basic_users(&dir);
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ basic = {{ users = "{users}", realm = "staff", identity_header = "X-User" }} }}"#
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let challenge = r#"Basic realm="staff""#;
    for (headers, what) in [
        (String::new(), "missing"),
        (basic("alice", "wrong"), "wrong password"),
        (basic("carol", "wonderland"), "unknown user"),
        (basic("bob", "wonderland"), "another user's password"),
        (
            "Authorization: Bearer abc\r\n".to_string(),
            "another scheme",
        ),
        ("Authorization: Basic !!!\r\n".to_string(), "not base64"),
    ] {
        assert_refused(&c.request(&get_with(&headers)), challenge, what);
    }
    // A HEAD gets the same head, no body.
    c.send(&request("HEAD", "/", ""));
    let r = c.read_response_to(true).expect("answer to HEAD");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(challenge));
    assert!(r.body.is_empty());
    assert!(
        up.requests().is_empty(),
        "a refused request reached the upstream"
    );

    // Good credentials, twice (the second from the worker's cache), with
    // a forged identity in both spellings.
    for _ in 0..2 {
        let forged = format!(
            "{}X-User: mallory\r\nX_User: mallory\r\n",
            basic("alice", "wonderland")
        );
        let r = c.request(&get_with(&forged));
        assert_eq!(r.status, 200, "{}", r.raw_head);
        let seen = up.last();
        assert_eq!(seen.header("x-user"), Some("alice"));
        assert_eq!(seen.header_count("x-user"), 1, "{}", seen.raw_head);
        assert_eq!(seen.header("x_user"), None, "{}", seen.raw_head);
        assert_eq!(seen.header("authorization"), None);
    }
    let r = c.request(&get_with(&basic("bob", "builder")));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-user"), Some("bob"));
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn basic_defaults_and_forwarded_credentials() {
    let dir = TempPath::unique_dir("auth");
    let users = basic_users(&dir);
    let up = Upstream::echo();
    // No realm: "ringress"; no identity header: none sent, but the
    // credentials are, when asked for.
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ basic = {{ users = "{users}" }}, forward_credentials = true }}"#
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    assert_refused(
        &c.request(&get("/")),
        r#"Basic realm="ringress""#,
        "missing",
    );
    let creds = basic("alice", "wonderland");
    let r = c.request(&get_with(&format!("{creds}X-User: alice-says\r\n")));
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(
        format!(
            "Authorization: {}\r\n",
            seen.header("authorization").unwrap()
        ),
        creds
    );
    // No identity header configured: the client's own field is its own.
    assert_eq!(seen.header("x-user"), Some("alice-says"));
}

#[test]
fn api_keys() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "# keys\nk-good-123 billing\nk-plain-456\n");
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ api_key = {{ keys = "{keys}", name_header = "X-Key-Name" }} }}"#
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let challenge = r#"ApiKey header="X-Api-Key""#;
    for (headers, what) in [
        ("", "missing"),
        ("X-Api-Key: k-good-12\r\n", "a prefix"),
        ("X-Api-Key: k-good-1234\r\n", "longer"),
        ("X-Api-Key: K-GOOD-123\r\n", "other case"),
        ("Authorization: Bearer k-good-123\r\n", "in another header"),
    ] {
        assert_refused(&c.request(&get_with(headers)), challenge, what);
    }
    assert!(up.requests().is_empty());
    let r = c.request(&get_with(
        "X-Api-Key: k-good-123\r\nX-Key-Name: admin\r\nX_Key_Name: admin\r\n",
    ));
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-key-name"), Some("billing"));
    assert_eq!(seen.header_count("x-key-name"), 1);
    assert_eq!(seen.header("x_key_name"), None);
    assert_eq!(seen.header("x-api-key"), None);
    // A key without a name: no name sent, and the forged one still gone.
    let r = c.request(&get_with("X-Api-Key: k-plain-456\r\nX-Key-Name: admin\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-key-name"), None);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn api_key_in_a_header_of_its_own_forwarded() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "secret-1\n");
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ api_key = {{ header = "X-Token", keys = "{keys}" }}, forward_credentials = true }}"#
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    assert_refused(
        &c.request(&get_with("X-Api-Key: secret-1\r\n")),
        r#"ApiKey header="X-Token""#,
        "the default header",
    );
    let r = c.request(&get_with("X-Token: secret-1\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-token"), Some("secret-1"));
}

fn jwt_config(up: &Upstream, extra: &str) -> String {
    let jwks = data("jwks.json");
    ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ jwt = {{ jwks = "{jwks}", issuer = "{ISSUER}", audience = "{AUDIENCE}", algorithms = ["ES256", "EdDSA"], claims_to_headers = {{ sub = "X-User", tenant = "X-Tenant" }}{extra} }} }}"#
        ))
        .build()
}

#[test]
fn jwt_tokens() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&jwt_config(&up, r#", leeway = "30s""#));
    let mut c = proxy.connect();
    let missing = "Bearer";
    let invalid = r#"Bearer error="invalid_token""#;
    let t = now();
    let other_key = token(
        &claims(json!({})),
        Algorithm::ES256,
        Some("ec1"),
        "ec-other-private.pem",
    );
    let unknown_kid = token(
        &claims(json!({})),
        Algorithm::ES256,
        Some("nope"),
        "ec-private.pem",
    );
    let no_kid = token(&claims(json!({})), Algorithm::ES256, None, "ec-private.pem");
    // The algorithm-confusion forgery: HS256 keyed with the public key.
    let hs256 = token(
        &claims(json!({})),
        Algorithm::HS256,
        Some("ec1"),
        "ec-public.pem",
    );
    let good = es256(json!({}));
    let tampered = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(json!({"sub": "admin"})).to_string());
        parts[1] = &payload;
        parts.join(".")
    };
    let refusals = [
        (String::new(), missing, "missing"),
        (basic("a", "b"), missing, "another scheme"),
        (bearer("garbage"), invalid, "garbage"),
        (
            bearer(&es256(json!({"exp": t - 120}))),
            invalid,
            "expired beyond leeway",
        ),
        (
            bearer(&es256(json!({"nbf": t + 120}))),
            invalid,
            "nbf beyond leeway",
        ),
        (bearer(&es256(json!({"exp": null}))), invalid, "no exp"),
        (bearer(&other_key), invalid, "wrong signature"),
        (bearer(&tampered), invalid, "tampered payload"),
        (bearer(&unknown_kid), invalid, "unknown kid"),
        (bearer(&no_kid), invalid, "no kid with two keys"),
        (bearer(&hs256), invalid, "HS256 with the public key"),
        (
            bearer(&es256(json!({"iss": "https://evil.test"}))),
            invalid,
            "wrong issuer",
        ),
        (bearer(&es256(json!({"iss": null}))), invalid, "no issuer"),
        (
            bearer(&es256(json!({"aud": "someone-else"}))),
            invalid,
            "wrong audience",
        ),
        (bearer(&es256(json!({"aud": null}))), invalid, "no audience"),
    ];
    for (headers, challenge, what) in &refusals {
        assert_refused(&c.request(&get_with(headers)), challenge, what);
    }
    assert!(
        up.requests().is_empty(),
        "a refused token reached the upstream"
    );

    let accepted = [
        (good.clone(), "good"),
        (good.clone(), "good again (cached)"),
        (es256(json!({"exp": t - 10})), "expired within leeway"),
        (es256(json!({"nbf": t + 10})), "nbf within leeway"),
        (
            es256(json!({"aud": [AUDIENCE, "other"]})),
            " one of its audiences",
        ),
        (
            token(
                &claims(json!({})),
                Algorithm::EdDSA,
                Some("ed1"),
                "ed25519-private.pem",
            ),
            "EdDSA",
        ),
    ];
    for (i, (tok, what)) in accepted.iter().enumerate() {
        let forged = format!("{}X-User: admin\r\nX_User: admin\r\n", bearer(tok));
        let r = c.request(&get_with(&forged));
        assert_eq!(r.status, 200, "{what}: {}", r.raw_head);
        let seen = up.last();
        assert_eq!(up.requests().len(), i + 1);
        assert_eq!(seen.header("x-user"), Some("user-42"), "{what}");
        assert_eq!(seen.header_count("x-user"), 1, "{what}: {}", seen.raw_head);
        assert_eq!(seen.header("x_user"), None, "{what}");
        assert_eq!(seen.header("x-tenant"), Some("acme"), "{what}");
        assert_eq!(seen.header("authorization"), None, "{what}");
    }
    // A refused token does not stay refused for a good one, nor does a
    // good one make a bad one pass on the same connection.
    assert_refused(
        &c.request(&get_with(&bearer(&other_key))),
        invalid,
        "after good ones",
    );
}

#[test]
fn jwt_algorithm_lists_are_checked_and_credentials_forwarded_when_asked() {
    let up = Upstream::echo();
    let jwks = data("jwks.json");
    let with = |auth: &str| {
        ConfigBuilder::new(up.addr)
            .route(&format!(r#"auth = {{ jwt = {{ jwks = "{jwks}"{auth} }}"#))
            .build()
    };
    // A key no listed algorithm fits; a symmetric algorithm; none listed.
    for (auth, want) in [
        (r#", algorithms = ["ES256"] }"#, "routes[0].auth.jwt.jwks"),
        (
            r#", algorithms = ["ES256", "HS256"] }"#,
            "routes[0].auth.jwt.algorithms",
        ),
        (" }", "routes[0].auth.jwt.algorithms: is required"),
    ] {
        let errors = refused(&with(auth));
        assert!(errors.contains(want), "{want} in:\n{errors}");
    }
    let proxy = Proxy::start(&with(
        r#", algorithms = ["ES256", "EdDSA"] }, forward_credentials = true"#,
    ));
    let mut c = proxy.connect();
    let tok = token(
        &json!({"sub": "s", "exp": now() + 600}),
        Algorithm::ES256,
        Some("ec1"),
        "ec-private.pem",
    );
    let r = c.request(&get_with(&bearer(&tok)));
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {tok}").as_str())
    );
}

#[test]
fn a_cached_token_ends_at_its_exp() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&jwt_config(&up, r#", leeway = "0s""#));
    let mut c = proxy.connect();
    let exp = now() + 2;
    let tok = es256(json!({ "exp": exp }));
    assert_eq!(c.request(&get_with(&bearer(&tok))).status, 200);
    assert_eq!(c.request(&get_with(&bearer(&tok))).status, 200);
    wait_until("the token expires", Duration::from_secs(5), || now() > exp);
    assert_refused(
        &c.request(&get_with(&bearer(&tok))),
        r#"Bearer error="invalid_token""#,
        "expired after it was cached",
    );
}

#[test]
fn rate_limits_come_before_auth() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "k1\n");
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .sections("[rate_limits.one]\nrate = \"2/m\"\nburst = 2\nkey = \"client_ip\"\n")
        .route(&format!(
            "rate_limit = \"one\"\nauth = {{ api_key = {{ keys = \"{keys}\" }} }}"
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    // As nginx runs limit_req before auth_basic: guesses spend the
    // guesser's budget, so a flood of them is refused at the limit and
    // does not cost a credential check each.
    assert_eq!(c.request(&get_with("X-Api-Key: guess\r\n")).status, 401);
    assert_eq!(c.request(&get_with("X-Api-Key: k1\r\n")).status, 200);
    for _ in 0..3 {
        assert_eq!(c.request(&get_with("X-Api-Key: guess\r\n")).status, 429);
    }
    assert_eq!(c.request(&get_with("X-Api-Key: k1\r\n")).status, 429);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn escaped_slashes_are_refused_on_an_auth_route() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "k1\n");
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!("auth = {{ api_key = {{ keys = \"{keys}\" }} }}"))
        .build();
    let proxy = Proxy::start(&toml);
    let r = proxy
        .connect()
        .request(&request("GET", "/a%2Fb", "X-Api-Key: k1\r\n"));
    assert_eq!(r.status, 400);
    assert!(up.requests().is_empty());
}

#[test]
fn a_reload_reads_the_users_again_and_a_broken_file_is_refused() {
    let dir = TempPath::unique_dir("auth");
    let alice = format!("alice:{}\n", bcrypt_hash("a-pw"));
    let users = write(&dir, "users", &alice);
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!(
            r#"auth = {{ basic = {{ users = "{users}", identity_header = "X-User" }} }}"#
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let carol = basic("carol", "c-pw");
    assert_eq!(proxy.connect().request(&get_with(&carol)).status, 401);
    write(
        &dir,
        "users",
        &format!("{alice}carol:{}\n", bcrypt_hash("c-pw")),
    );
    proxy.reload(&toml);
    let r = proxy.connect().request(&get_with(&carol));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-user"), Some("carol"));

    // A hash of another kind on line 3: refused with its key path and
    // line, and the running config keeps serving.
    write(
        &dir,
        "users",
        &format!("{alice}# next\ndave:$apr1$abc$def\n"),
    );
    let errors = refused(&toml);
    assert!(
        errors.contains("routes[0].auth.basic.users: ") && errors.contains(": line 3: user `dave`"),
        "{errors}"
    );
    std::fs::remove_file(&users).unwrap();
    let errors = refused(&toml);
    assert!(
        errors.contains("routes[0].auth.basic.users: cannot read"),
        "{errors}"
    );
    assert_eq!(proxy.connect().request(&get_with(&carol)).status, 200);
    assert_eq!(proxy.connect().request(&get("/")).status, 401);
}

#[test]
fn auth_tables_report_their_mistakes() {
    let dir = TempPath::unique_dir("auth");
    let users = write(&dir, "users", &format!("a:{}\n", bcrypt_hash("x")));
    let keys = write(&dir, "keys", "k\n");
    for (auth, want) in [
        (
            "{}",
            "routes[0].auth: needs exactly one of basic, api_key, jwt",
        ),
        (
            &format!(r#"{{ basic = {{ users = "{users}" }}, api_key = {{ keys = "{keys}" }} }}"#),
            "routes[0].auth: needs exactly one",
        ),
        (
            &format!(r#"{{ basic = {{ users = "{users}", relm = "x" }} }}"#),
            "routes[0].auth.basic.relm: unknown key (did you mean `realm`?)",
        ),
        (
            &format!(r#"{{ basic = {{ users = "{users}" }}, forward = true }}"#),
            "routes[0].auth.forward: unknown key",
        ),
        (
            r#"{ basic = { realm = "r" } }"#,
            "routes[0].auth.basic.users: missing",
        ),
        (
            &format!(r#"{{ basic = {{ users = "{users}", realm = "a\"b" }} }}"#),
            "routes[0].auth.basic.realm",
        ),
        (
            &format!(r#"{{ api_key = {{ keys = "{keys}", name_header = "Bad Name" }} }}"#),
            "routes[0].auth.api_key.name_header: is not a header field name",
        ),
        (
            &format!(r#"{{ api_key = {{ keys = "{keys}", header = "Content-Length" }} }}"#),
            "routes[0].auth.api_key.header",
        ),
    ] {
        let toml = ConfigBuilder::new(dead_addr())
            .route(&format!("auth = {auth}"))
            .build();
        let errors = Config::from_toml_str(&toml)
            .err()
            .unwrap_or_else(|| panic!("{auth} accepted"))
            .to_string();
        assert!(errors.contains(want), "{want} in:\n{errors}");
    }
}

#[test]
fn check_reports_a_broken_users_file_relative_to_the_config() {
    let dir = TempPath::unique_dir("auth");
    let config = |users: &str| {
        format!(
            "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n\
             [[routes]]\nrespond = {{ status = 200 }}\n\
             auth = {{ basic = {{ users = \"{users}\" }} }}\n"
        )
    };
    let path = write(&dir, "ringress.toml", &config("users.htpasswd"));
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_ringress"))
            .args(["--check", "--config", &path])
            .output()
            .expect("run ringress --check")
    };
    write(
        &dir,
        "users.htpasswd",
        &format!("# users\nok:{}\nbad:{{SHA}}abc=\n", bcrypt_hash("x")),
    );
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("routes[0].auth.basic.users: ")
            && stderr.contains("users.htpasswd: line 3: user `bad`: unsupported hash"),
        "{stderr}"
    );
    write(
        &dir,
        "users.htpasswd",
        &format!("ok:{}\n", bcrypt_hash("x")),
    );
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_auth_route_caches_only_shareable_responses() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "k1 one\nk2 two\n");
    let up = Upstream::start(|r, w, up| {
        use std::io::Write;
        while let Some(req) = up.record(r) {
            let control = if req.target == "/public" {
                "public, max-age=60"
            } else {
                "max-age=60"
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: {control}\r\nContent-Length: 2\r\n\r\nok"
            );
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    });
    let toml = ConfigBuilder::new(up.addr)
        .sections("[cache.main]\nmax_size = \"16MiB\"\nmax_object = \"1MiB\"\n")
        .route(&format!(
            "cache = {{ zone = \"main\" }}\nauth = {{ api_key = {{ keys = \"{keys}\", name_header = \"X-Client\" }} }}"
        ))
        .build();
    let proxy = Proxy::start_with(&toml, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    // A private answer to one key is not served to another.
    for key in ["k1", "k2", "k1"] {
        let r = c.request(&request(
            "GET",
            "/private",
            &format!("X-Api-Key: {key}\r\n"),
        ));
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.requests().len(), 3);
    for key in ["k1", "k2"] {
        let r = c.request(&request("GET", "/public", &format!("X-Api-Key: {key}\r\n")));
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.requests().len(), 4, "a public answer is stored");
    // A hit still needs credentials.
    assert_eq!(c.request(&get("/public")).status, 401);
}

#[test]
fn refusals_are_counted_as_unauthorized() {
    let dir = TempPath::unique_dir("auth");
    let keys = write(&dir, "keys", "k1\n");
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(&format!("auth = {{ api_key = {{ keys = \"{keys}\" }} }}"))
        .build();
    let proxy = Proxy::start(&toml);
    let admin = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), dir.join("unused.toml"))
        .expect("admin binds");
    let mut c = proxy.connect();
    for _ in 0..3 {
        assert_eq!(c.request(&get("/")).status, 401);
    }
    assert_eq!(c.request(&get_with("X-Api-Key: k1\r\n")).status, 200);
    let want = "ringress_rejections_total{reason=\"unauthorized\"} 3";
    wait_until("the 401s are counted", Duration::from_secs(5), || {
        admin_metrics(admin).contains(want)
    });
}
