//! Client configuration: the session settings, the regions, the key; from code, the
//! environment or a TOML file.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use pool_core::{EndpointSpec, SessionConfig};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://gen.pollinations.ai";

/// An API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; surrounding whitespace is dropped.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into().trim().to_string())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One region: a base URL with its own pool, breaker and health state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// A short name for logs and errors, e.g. `eu-west`.
    pub name: String,
    /// The base URL, e.g. `https://gen.pollinations.ai` (a path prefix is allowed).
    pub base_url: String,
    /// Lower is preferred by the primary/backup strategy. Default: 0.
    #[serde(default)]
    pub priority: u32,
    /// Share of traffic for round robin and random. Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl Region {
    /// A region with priority 0 and weight 1.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Region { name: name.into(), base_url: base_url.into(), priority: 0, weight: 1 }
    }

    /// The same region with this priority.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The same region with this weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// Everything a client is built from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Pool, timeouts, resilience (the guide's `SessionConfig`).
    pub session: SessionConfig,
    /// Base URL when no regions are listed. Default: `https://gen.pollinations.ai`.
    pub base_url: String,
    /// Regions; empty means one region named `default` at `base_url`.
    pub regions: Vec<Region>,
    /// The API key, sent as `Authorization: Bearer` to the configured regions only.
    pub api_key: Option<ApiKey>,
    /// Speak HTTP/2 over plain http without negotiation (h2c); https regions still negotiate by
    /// ALPN. Default: false.
    pub http2_prior_knowledge: bool,
    /// Path of the cheap request active health checks send. Default: `/v1/models`.
    pub health_check_path: String,
    /// Redirects followed within the same region, at most [`MAX_REDIRECTS`]; 0 turns them off.
    /// A redirect to another host or scheme is always refused. As the Fetch standard says, a
    /// `POST` answered 301 or 302, and any method but `GET`/`HEAD` answered 303, is followed as
    /// a bodiless `GET`; 307 and 308 keep the method and body. Default: 0.
    pub max_redirects: u32,
    /// `User-Agent` header. Default: `blossom/<version>`.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            session: SessionConfig::default(),
            base_url: DEFAULT_BASE_URL.to_string(),
            regions: Vec::new(),
            api_key: None,
            http2_prior_knowledge: false,
            health_check_path: "/v1/models".to_string(),
            max_redirects: 0,
            user_agent: concat!("blossom/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl ClientConfig {
    /// Reads a TOML file (`[session]`, `[[regions]]`, `base_url`, ...).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            field: "config_file".into(),
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        toml::from_str(text)
            .map_err(|e| Error::Config { field: "config_file".into(), problem: e.message().to_string() })
    }

    /// Applies the environment: `POLLINATIONS_API_KEY`, `BLOSSOM_BASE_URL`,
    /// `BLOSSOM_REGIONS` (`name=url,name=url`), `BLOSSOM_PRESET`, `BLOSSOM_LOG_LEVEL`.
    pub fn apply_env(&mut self) -> Result<(), Error> {
        self.apply_vars(|name| std::env::var(name).ok())
    }

    pub(crate) fn apply_vars(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        if let Some(preset) = var("BLOSSOM_PRESET") {
            self.session = SessionConfig::preset(&preset)?;
        }
        if let Some(key) = var("POLLINATIONS_API_KEY").filter(|k| !k.trim().is_empty()) {
            self.api_key = Some(ApiKey::new(key));
        }
        if let Some(url) = var("BLOSSOM_BASE_URL") {
            self.base_url = url;
        }
        if let Some(list) = var("BLOSSOM_REGIONS") {
            self.regions = parse_region_list(&list)?;
        }
        if let Some(level) = var("BLOSSOM_LOG_LEVEL") {
            self.session.log_level = level.parse()?;
        }
        Ok(())
    }

    /// Refuses a configuration that cannot work, naming the field (`session.*` fields by their
    /// session name, e.g. `rate_limit_per_minute`, nested ones as `breaker.failure_threshold`).
    /// The message never contains the API key.
    pub fn validate(&self) -> Result<(), Error> {
        self.session.validate().map_err(|e| {
            // The limiter's own names differ from the session fields that set them.
            let field = match e.field.as_str() {
                "rate_per_minute" => "rate_limit_per_minute".to_string(),
                "burst" => "rate_limit_burst".to_string(),
                _ => e.field,
            };
            Error::Config { field, problem: e.problem }
        })?;
        self.parsed_regions()?;
        if let Some(key) = &self.api_key {
            if key.expose().is_empty() {
                return Err(config_error("api_key", "must not be empty; leave it unset for anonymous use"));
            }
            if !key.expose().bytes().all(|b| b.is_ascii_graphic()) {
                // Never echo the key: say what is wrong, not what it is.
                return Err(config_error(
                    "api_key",
                    "must be printable ASCII without spaces (check for a stray quote or newline)",
                ));
            }
        }
        // What `HeaderValue::from_static` takes (the client interns it): `from_str` would also let
        // non-ASCII bytes through.
        if !self.user_agent.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(config_error(
                "user_agent",
                "must be a valid header value (visible ASCII, no control characters)",
            ));
        }
        let path_ok = self.health_check_path.starts_with('/')
            && self.health_check_path.parse::<http::uri::PathAndQuery>().is_ok();
        if !path_ok {
            return Err(config_error(
                "health_check_path",
                format!("must be a path starting with `/`, got `{}`", self.health_check_path.escape_debug()),
            ));
        }
        if self.max_redirects > MAX_REDIRECTS {
            return Err(config_error(
                "max_redirects",
                format!("must be in 0..={MAX_REDIRECTS}, got {}", self.max_redirects),
            ));
        }
        Ok(())
    }

    /// The regions in force, parsed; errors name `base_url` when no regions are listed.
    pub(crate) fn parsed_regions(&self) -> Result<Vec<ParsedRegion>, Error> {
        if self.regions.is_empty() {
            return ParsedRegion::parse(&Region::new("default", self.base_url.clone()), 0).map(|r| vec![r]).map_err(
                |e| match e {
                    Error::Config { problem, .. } => Error::Config { field: "base_url".into(), problem },
                    other => other,
                },
            );
        }
        let regions =
            self.regions.iter().enumerate().map(|(i, r)| ParsedRegion::parse(r, i)).collect::<Result<Vec<_>, _>>()?;
        for (i, region) in regions.iter().enumerate() {
            if regions[..i].iter().any(|r| r.name == region.name) {
                return Err(config_error(
                    format!("regions[{i}].name"),
                    format!("`{}` is used by another region; names must be unique", region.name),
                ));
            }
        }
        Ok(regions)
    }

    /// The regions in force: the listed ones, or `default` at `base_url`.
    pub fn effective_regions(&self) -> Vec<Region> {
        if self.regions.is_empty() { vec![Region::new("default", self.base_url.clone())] } else { self.regions.clone() }
    }
}

/// Most redirects a client may be configured to follow.
pub const MAX_REDIRECTS: u32 = 20;

fn config_error(field: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::Config { field: field.into(), problem: problem.into() }
}

/// Parses `name=url,name=url` (the CLI's and `BLOSSOM_REGIONS`'s form).
pub fn parse_region_list(list: &str) -> Result<Vec<Region>, Error> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, item)| match item.split_once('=') {
            Some((name, url)) if !name.trim().is_empty() => Ok(Region::new(name.trim(), url.trim()).priority(i as u32)),
            _ => Err(Error::Config {
                field: "regions".into(),
                problem: format!("expected name=url, got `{}`", item.trim()),
            }),
        })
        .collect()
}

/// A region's base URL, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct ParsedRegion {
    pub(crate) name: String,
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub(crate) prefix: String,
    /// `host` or `host:port`, parsed once: HTTP/2's `:authority`, redirects, the `Host` header.
    pub(crate) uri_authority: http::uri::Authority,
    /// The Host header, built once.
    pub(crate) host_header: http::HeaderValue,
    pub(crate) spec: EndpointSpec,
}

impl ParsedRegion {
    pub(crate) fn parse(region: &Region, index: usize) -> Result<Self, Error> {
        let field = format!("regions[{index}].base_url");
        let bad = |problem: String| Error::Config { field: field.clone(), problem };
        if region.name.trim().is_empty() {
            return Err(Error::Config { field: format!("regions[{index}].name"), problem: "must not be empty".into() });
        }
        let uri: http::Uri = region.base_url.parse().map_err(|e| bad(format!("is not a URL: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must start with https:// or http://".into())),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry credentials; use api_key".into()));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query; put the key in api_key".into()));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(bad("has no host".into()));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        http::HeaderValue::from_str(authority.as_str()).map_err(|_| bad("has an invalid host".into()))?;
        // Static (interned): every request clones both, and a clone of a static value touches no
        // reference count shared between the runtime's threads.
        let interned = intern(authority.as_str());
        Ok(ParsedRegion {
            name: region.name.clone(),
            tls,
            host,
            port,
            uri_authority: http::uri::Authority::from_static(interned),
            host_header: http::HeaderValue::from_static(interned),
            prefix: uri.path().trim_end_matches('/').to_string(),
            spec: EndpointSpec { priority: region.priority, weight: region.weight },
        })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The one `'static` copy of `value`, made on first use. The process keeps one copy of each
/// distinct region authority (`host:port`) and user agent it ever configured: a few bytes each,
/// bounded by what the program names.
pub(crate) fn intern(value: &str) -> &'static str {
    static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut interned = INTERNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&known) = interned.iter().find(|known| **known == value) {
        return known;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    interned.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_is_interned_once() {
        let first = intern("interned.example:8443");
        let again = intern(&String::from("interned.example:8443"));
        assert!(std::ptr::eq(first, again), "the same value gives the same static copy");
        let other = intern("other.example:8443");
        assert_eq!((first, other), ("interned.example:8443", "other.example:8443"));
        assert!(!std::ptr::eq(first, other));
    }

    #[test]
    fn key_is_redacted() {
        let config = ClientConfig { api_key: Some(ApiKey::new("sk_secret_123")), ..ClientConfig::default() };
        let shown = format!("{config:?} {}", config.api_key.as_ref().unwrap());
        assert!(!shown.contains("sk_secret_123"), "{shown}");
    }

    #[test]
    fn env_sets_key_regions_and_preset() {
        let vars = |name: &str| match name {
            "POLLINATIONS_API_KEY" => Some(" sk_abc ".to_string()),
            "BLOSSOM_REGIONS" => Some("eu=http://127.0.0.1:1, us=https://us.example".to_string()),
            "BLOSSOM_PRESET" => Some("batch".to_string()),
            _ => None,
        };
        let mut config = ClientConfig::default();
        config.apply_vars(vars).unwrap();
        assert_eq!(config.api_key.as_ref().unwrap().expose(), "sk_abc");
        assert_eq!(config.regions.len(), 2);
        assert_eq!(config.regions[1].priority, 1);
        assert_eq!(config.session.sync_pool_maxsize, 10);
        let mut bad = ClientConfig::default();
        let err = bad.apply_vars(|n| (n == "BLOSSOM_REGIONS").then(|| "noequals".to_string())).unwrap_err();
        assert!(err.to_string().contains("regions"), "{err}");
    }

    #[test]
    fn toml_file_reads_session_and_regions() {
        let text = r#"
            base_url = "http://localhost:8080"
            [session]
            timeout = 10
            sync_pool_maxsize = 40
            [[regions]]
            name = "a"
            base_url = "http://127.0.0.1:9000/prefix/"
            priority = 2
        "#;
        let config = ClientConfig::from_toml_str(text).unwrap();
        assert_eq!(config.session.sync_pool_maxsize, 40);
        let region = ParsedRegion::parse(&config.effective_regions()[0], 0).unwrap();
        assert_eq!(
            (region.host.as_str(), region.port, region.prefix.as_str(), region.tls),
            ("127.0.0.1", 9000, "/prefix", false)
        );
        let err = ClientConfig::from_toml_str("sesion = 1").unwrap_err();
        assert!(err.to_string().contains("sesion"), "{err}");
    }

    #[test]
    fn base_urls_are_checked() {
        for (url, needle) in [
            ("ftp://x", "https://"),
            ("https://user:pw@host", "credentials"),
            ("https://host/?key=sk_1", "query"),
            ("not a url", "URL"),
        ] {
            let err = ParsedRegion::parse(&Region::new("r", url), 0).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("regions[0].base_url"), "{url}: {err}");
            assert!(!err.contains("sk_1"), "{err}");
        }
        let r = ParsedRegion::parse(&Region::new("r", DEFAULT_BASE_URL), 0).unwrap();
        assert_eq!((r.port, r.tls, r.uri_authority.as_str()), (443, true, "gen.pollinations.ai"));
    }
}
