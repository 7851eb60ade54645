//! The HTTP side of the distribution spec: TLS with the system CA bundle plus docker-style
//! `certs.d/<host:port>/*.crt`, plain HTTP only for insecure registries, and the auth dance
//! (anonymous, Basic, Bearer tokens from the `WWW-Authenticate` challenge).

use super::auth::{self, Challenge, Credentials};
use super::RegistryError;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::http::{self, Response};
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body, SendBody};

/// How the daemon reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` or IPv4 CIDR ranges reachable over plain HTTP (docker's
    /// `insecure-registries`). Loopback always is, as in docker.
    pub insecure: Vec<String>,
    /// Extra trust per registry: `<certs_dir>/<host:port>/*.crt`.
    pub certs_dir: PathBuf,
    /// The system's CA bundle.
    pub ca_bundle: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            certs_dir: PathBuf::from("/etc/shoal/certs.d"),
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

impl RegistryConfig {
    /// Whether plain HTTP may be used for `registry` (`host[:port]`).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_part(registry);
        if host == "localhost" || host == "::1" {
            return true;
        }
        let ip = host.parse::<Ipv4Addr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            let entry = entry.trim();
            if entry == registry || entry == host {
                return true;
            }
            match (entry.split_once('/'), ip) {
                (Some((net, bits)), Some(ip)) => in_cidr(ip, net, bits),
                _ => false,
            }
        })
    }
}

fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

fn in_cidr(ip: Ipv4Addr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// One registry repository with authentication settled.
pub struct Session {
    agent: Agent,
    /// `https://host:port` or `http://host:port`.
    pub base: String,
    pub repo: String,
    creds: Option<Credentials>,
    scope: String,
    /// The `Authorization` value in use (Basic or Bearer), once a challenge asked for one.
    authorization: Mutex<Option<String>>,
}

const MAX_REDIRECTS: usize = 5;
/// Longest time one response body may take (see `agent_for`).
const BODY_TIMEOUT: Duration = Duration::from_secs(120);

impl Session {
    /// Reach `registry` (`docker.io` means Docker Hub's API host), choose the scheme, and
    /// authenticate for `repo` with pull (and push) rights.
    pub fn open(
        config: &RegistryConfig,
        registry: &str,
        repo: &str,
        creds: Option<Credentials>,
        push: bool,
    ) -> Result<Session, RegistryError> {
        let api_host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let agent = agent_for(config, registry)?;
        let actions = if push { "pull,push" } else { "pull" };
        let mut session = Session {
            agent,
            base: format!("https://{api_host}"),
            repo: repo.to_string(),
            creds,
            scope: if repo.is_empty() {
                String::new()
            } else {
                format!("repository:{repo}:{actions}")
            },
            authorization: Mutex::new(None),
        };
        let ping = match session.raw("GET", &session.url("/v2/"), &[], None) {
            Ok(r) => r,
            Err(https_err) if config.is_insecure(registry) => {
                log::info!("registry {registry}: HTTPS failed ({https_err}); trying plain HTTP");
                session.base = format!("http://{api_host}");
                let fallback = session.raw("GET", &session.url("/v2/"), &[], None);
                match fallback {
                    // A registry API answers /v2/ with 200 or 401; anything else (a TLS server's
                    // 400 to plain HTTP) means HTTPS was the right scheme after all.
                    Ok(r) if r.status() == 200 || r.status() == 401 => r,
                    Ok(r) => {
                        return Err(RegistryError::unavailable(format!(
                            "registry {registry}: HTTPS failed ({https_err}); plain HTTP answered {}",
                            r.status()
                        )))
                    }
                    Err(http_err) => {
                        return Err(RegistryError::unavailable(format!(
                            "registry {registry}: HTTPS failed ({https_err}); plain HTTP failed ({http_err})"
                        )))
                    }
                }
            }
            Err(e) => {
                return Err(RegistryError::unavailable(format!(
                    "registry {registry}: {e} (a plain-HTTP registry must be listed in the daemon's insecure-registries)"
                )))
            }
        };
        if ping.status() == 401 {
            session.authenticate(&ping)?;
        }
        Ok(session)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request without auth retry. `body` is sent as bytes.
    fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, RegistryError> {
        let auth = self
            .authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth.filter(|_| same_origin(url, &self.base)) {
            b = b.header("Authorization", a);
        }
        let result = match body {
            Some(bytes) => self.agent.run(
                b.body(bytes)
                    .map_err(|e| RegistryError::internal(e.to_string()))?,
            ),
            None => self.agent.run(
                b.body(SendBody::none())
                    .map_err(|e| RegistryError::internal(e.to_string()))?,
            ),
        };
        result.map_err(|e| RegistryError::unavailable(format!("{method} {url}: {e}")))
    }

    /// A request, authenticating and retrying once when the registry answers 401.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, RegistryError> {
        let resp = self.raw(method, url, headers, body)?;
        if resp.status() == 401 {
            self.authenticate(&resp)?;
            return self.raw(method, url, headers, body);
        }
        Ok(resp)
    }

    /// Send a streamed body of known length (a blob upload); auth must already be settled.
    pub fn send_stream(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
        len: u64,
    ) -> Result<Response<Body>, RegistryError> {
        let auth = self
            .authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut b = http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Length", len.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth.filter(|_| same_origin(url, &self.base)) {
            b = b.header("Authorization", a);
        }
        let req = b
            .body(SendBody::from_reader(body))
            .map_err(|e| RegistryError::internal(e.to_string()))?;
        self.agent
            .run(req)
            .map_err(|e| RegistryError::unavailable(format!("{method} {url}: {e}")))
    }

    /// GET following redirects by hand: a redirect to another host (blob storage) gets no
    /// Authorization header.
    pub fn get_following(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Body>, RegistryError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.call("GET", &url, headers, None)?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RegistryError::unavailable(format!("GET {url}: redirect without Location")))?;
            url = resolve_url(&url, location);
        }
        Err(RegistryError::unavailable(format!(
            "GET {url}: more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Settle auth from a 401's challenge: Basic sends the credentials, Bearer fetches a
    /// token for this repository's scope from the realm.
    fn authenticate(&self, resp: &Response<Body>) -> Result<(), RegistryError> {
        let header = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(auth::parse_challenge)
            .next();
        let denied = || {
            RegistryError::new(
                401,
                match &self.creds {
                    Some(_) => "unauthorized: incorrect username or password".to_string(),
                    None => "unauthorized: authentication required (run `shoal login` for this registry)"
                        .to_string(),
                },
            )
        };
        let value = match header {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic_header(),
                None => return Err(denied()),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut url = realm.clone();
                let mut params = Vec::new();
                if let Some(s) = service {
                    params.push(format!("service={}", query_escape(&s)));
                }
                if !self.scope.is_empty() {
                    params.push(format!("scope={}", query_escape(&self.scope)));
                }
                if !params.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&params.join("&"));
                }
                let mut b = http::Request::builder().method("GET").uri(&url);
                if let Some(c) = &self.creds {
                    b = b.header("Authorization", c.basic_header());
                }
                let req = b
                    .body(SendBody::none())
                    .map_err(|e| RegistryError::internal(e.to_string()))?;
                let mut token_resp = self
                    .agent
                    .run(req)
                    .map_err(|e| RegistryError::unavailable(format!("token server {realm}: {e}")))?;
                if token_resp.status() == 401 || token_resp.status() == 403 {
                    return Err(denied());
                }
                if !token_resp.status().is_success() {
                    return Err(RegistryError::unavailable(format!(
                        "token server {realm} answered {}",
                        token_resp.status()
                    )));
                }
                let v: serde_json::Value = token_resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_json_value()?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        RegistryError::unavailable(format!("token server {realm} sent no token"))
                    })?;
                format!("Bearer {token}")
            }
            None => return Err(denied()),
        };
        let mut slot = self.authorization.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_deref() == Some(value.as_str()) {
            // The same credentials were already refused.
            return Err(denied());
        }
        *slot = Some(value);
        Ok(())
    }

    /// Confirm that the credentials work (`POST /auth`): `/v2/` must answer 200.
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let resp = self.call("GET", &self.url("/v2/"), &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(RegistryError::new(
                401,
                "unauthorized: incorrect username or password",
            )),
            s => Err(RegistryError::unavailable(format!(
                "login attempt to {}/v2/ failed with status: {s}",
                self.base
            ))),
        }
    }
}

/// Read a small body as JSON.
trait ReadJson {
    fn read_json_value(self) -> Result<serde_json::Value, RegistryError>;
}

impl ReadJson for ureq::BodyWithConfig<'_> {
    fn read_json_value(self) -> Result<serde_json::Value, RegistryError> {
        let bytes = self
            .read_to_vec()
            .map_err(|e| RegistryError::unavailable(format!("reading response: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::unavailable(format!("response is not JSON: {e}")))
    }
}

/// Read a whole (small) body, at most `limit` bytes.
pub fn read_small(resp: &mut Response<Body>, limit: u64) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| RegistryError::unavailable(format!("reading response: {e}")))
}

/// The error a registry put in its body (`{"errors":[{"code","message"}]}`), or the status.
pub fn error_text(resp: &mut Response<Body>) -> String {
    let status = resp.status();
    let body = read_small(resp, 64 * 1024).unwrap_or_default();
    let from_json = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?;
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            Some(format!("{}: {msg}", code.to_ascii_lowercase().replace('_', " ")))
        });
    from_json.unwrap_or_else(|| format!("HTTP {status}"))
}

fn same_origin(url: &str, base: &str) -> bool {
    url.starts_with(base) && matches!(url.as_bytes().get(base.len()), None | Some(b'/') | Some(b'?'))
}

/// Resolve a Location header against the URL that sent it.
pub fn resolve_url(from: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = from.find("://").map_or(0, |i| i + 3);
    let origin_end = from[scheme_end..]
        .find('/')
        .map_or(from.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        format!("{}{location}", &from[..origin_end])
    } else {
        let dir_end = from
            .rfind('/')
            .filter(|i| *i >= origin_end)
            .map_or(from.len(), |i| i + 1);
        format!("{}{location}", &from[..dir_end])
    }
}

pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn agent_for(config: &RegistryConfig, registry: &str) -> Result<Agent, RegistryError> {
    let mut roots = Vec::new();
    let mut files = vec![config.ca_bundle.clone()];
    // docker's layout: certs.d/<host:port>/ca.crt (any *.crt is a CA there).
    if let Ok(dir) = std::fs::read_dir(config.certs_dir.join(registry)) {
        let mut extra: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    for path in files {
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RegistryError::internal(format!("{}: {e}", path.display()))),
        };
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => roots.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(RegistryError::internal(format!(
                        "{}: not a PEM certificate file: {e}",
                        path.display()
                    )))
                }
            }
        }
    }
    // ring rather than aws-lc-rs keeps the build pure Rust plus portable C for the ARM
    // boards; ring has no post-quantum key exchange, hence the deprecation.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(provider))
        .build();
    let config = Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        // ureq has no idle timeout, and a link that goes silent (Wi-Fi gone, no RST) would
        // hang a pull forever; bounding each response body instead is harmless for blobs,
        // which resume with a Range request where the cut happened.
        .timeout_recv_body(Some(BODY_TIMEOUT))
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .build();
    // shoal's own host lookup: a static binary must not use glibc's getaddrinfo (NSS).
    Ok(Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        super::resolve::BoardResolver,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_matching() {
        let c = RegistryConfig {
            insecure: vec!["reg.lan:5000".into(), "10.1.0.0/16".into()],
            ..Default::default()
        };
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(c.is_insecure("localhost"));
        assert!(c.is_insecure("reg.lan:5000"));
        assert!(!c.is_insecure("reg.lan:5001"));
        assert!(c.is_insecure("10.1.2.3:5000"));
        assert!(!c.is_insecure("10.2.0.1:5000"));
        assert!(!c.is_insecure("docker.io"));
    }

    #[test]
    fn locations_resolve() {
        let from = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        assert_eq!(
            resolve_url(from, "/v2/a/blobs/uploads/x?y=1"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?y=1"
        );
        assert_eq!(resolve_url(from, "https://cdn/b"), "https://cdn/b");
        assert_eq!(
            resolve_url(from, "x"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x"
        );
        assert!(same_origin("http://h:1/v2/", "http://h:1"));
        assert!(!same_origin("http://h:12/v2/", "http://h:1"));
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
