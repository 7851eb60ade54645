//! Registry credentials and authentication, the pure parts: the `WWW-Authenticate` challenge,
//! the `X-Registry-Auth` header the Docker API carries, and the `auths` section of docker's
//! `~/.docker/config.json`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The key docker uses in `config.json` for Docker Hub.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or an identity token in `password`), for one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    /// Docker's OAuth refresh token; sent as the password with `grant_type=refresh_token`.
    #[serde(default, rename = "identitytoken", skip_serializing_if = "String::is_empty")]
    pub identity_token: String,
    /// `base64(user:pass)`, as some clients send instead of the two fields.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
}

impl Credentials {
    /// True when there is nothing to authenticate with.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_empty()
    }

    /// Fill `username`/`password` from `auth` when only that was sent.
    fn normalised(mut self) -> Credentials {
        if self.username.is_empty() && !self.auth.is_empty() {
            if let Some((u, p)) = decode_basic(&self.auth) {
                self.username = u;
                self.password = p;
            }
        }
        self
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Decode `X-Registry-Auth`: base64url of a JSON object (docker's CLI sends URL-safe base64;
/// padding and the standard alphabet are accepted too). An empty header or `{}` means
/// anonymous.
pub fn decode_registry_auth(header: &str) -> Result<Option<Credentials>, String> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE
        .decode(header)
        .or_else(|_| URL_SAFE_NO_PAD.decode(header))
        .or_else(|_| STANDARD.decode(header))
        .map_err(|e| format!("X-Registry-Auth is not base64: {e}"))?;
    let creds: Credentials = serde_json::from_slice(&bytes)
        .map_err(|e| format!("X-Registry-Auth is not the JSON docker sends: {e}"))?;
    let creds = creds.normalised();
    Ok((!creds.is_empty()).then_some(creds))
}

/// Encode credentials as docker's CLI does for `X-Registry-Auth`.
pub fn encode_registry_auth(creds: &Credentials) -> String {
    URL_SAFE.encode(serde_json::to_vec(creds).unwrap_or_default())
}

/// `base64(user:pass)` → (user, pass).
pub fn decode_basic(auth: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn encode_basic(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"` or
/// `Basic realm="..."`. Unknown schemes give None.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else {
        None
    }
}

/// `key="quoted, value",key2=token` → map (keys lower-cased).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.insert(key, value);
    }
    out
}

/// The key docker's `config.json` uses for a registry host.
pub fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_AUTH_KEY.to_string(),
        other => other.to_string(),
    }
}

/// The registry host a `shoal login SERVER` argument names (`https://host:5000/` → `host:5000`).
pub fn server_host(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// The `auths` entry for `registry` in a parsed `config.json`, matching keys with or without
/// scheme and path as docker does.
pub fn lookup_config(config: &serde_json::Value, registry: &str) -> Option<Credentials> {
    let auths = config.get("auths")?.as_object()?;
    let want = config_key(registry);
    let (_, entry) = auths
        .iter()
        .find(|(k, _)| *k == &want || server_host(k) == server_host(registry))?;
    let auth = entry.get("auth").and_then(|a| a.as_str()).unwrap_or("");
    let (username, password) = decode_basic(auth)?;
    let identity_token = entry
        .get("identitytoken")
        .and_then(|a| a.as_str())
        .unwrap_or("")
        .to_string();
    Some(Credentials {
        username,
        password,
        server_address: want,
        identity_token,
        auth: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn registry_auth_round_trips_and_accepts_auth_field() {
        let c = Credentials {
            username: "u".into(),
            password: "p?>>".into(),
            server_address: "h:5000".into(),
            ..Default::default()
        };
        assert_eq!(decode_registry_auth(&encode_registry_auth(&c)).unwrap(), Some(c));
        let only_auth = URL_SAFE.encode(format!(r#"{{"auth":"{}"}}"#, encode_basic("a", "b:c")));
        let got = decode_registry_auth(&only_auth).unwrap().unwrap();
        assert_eq!((got.username.as_str(), got.password.as_str()), ("a", "b:c"));
        assert_eq!(decode_registry_auth("e30=").unwrap(), None);
        assert!(decode_registry_auth("!!!").unwrap_err().contains("base64"));
    }

    #[test]
    fn config_lookup_like_docker() {
        let cfg = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": encode_basic("hub", "pw")},
            "localhost:5000": {"auth": encode_basic("me", "secret")},
        }});
        assert_eq!(lookup_config(&cfg, "docker.io").unwrap().username, "hub");
        assert_eq!(lookup_config(&cfg, "localhost:5000").unwrap().password, "secret");
        assert!(lookup_config(&cfg, "other:5000").is_none());
        assert_eq!(server_host("https://reg.lan:5000/v2/"), "reg.lan:5000");
        assert_eq!(config_key("docker.io"), DOCKER_HUB_AUTH_KEY);
    }
}
