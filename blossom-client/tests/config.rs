//! Every invalid configuration field is refused by `build()` with an error naming it.

mod common;

use std::time::Duration;

use blossom_client::{BlossomClient, ClientConfig, Error, Region, SessionConfig};

fn refused(config: ClientConfig) -> (String, String) {
    match BlossomClient::builder().config(config).build() {
        Err(Error::Config { field, problem }) => (field, problem),
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(_) => panic!("an invalid config was accepted"),
    }
}

fn with_session(change: impl FnOnce(&mut SessionConfig)) -> ClientConfig {
    let mut config = ClientConfig { base_url: "http://127.0.0.1:1".into(), ..ClientConfig::default() };
    change(&mut config.session);
    config
}

/// A change to a valid session that makes it invalid.
type Change = Box<dyn FnOnce(&mut SessionConfig)>;

#[tokio::test]
async fn every_invalid_session_field_is_named() {
    let zero = Duration::ZERO;
    let cases: Vec<(&str, Change)> = vec![
        ("sync_pool_connections", Box::new(|s| s.sync_pool_connections = 0)),
        ("sync_pool_maxsize", Box::new(|s| s.sync_pool_maxsize = 1)),
        ("async_limit_total", Box::new(|s| s.async_limit_total = 0)),
        ("async_limit_per_host", Box::new(|s| s.async_limit_per_host = 0)),
        ("async_limit_per_host", Box::new(|s| s.async_limit_per_host = s.async_limit_total + 1)),
        ("timeout", Box::new(move |s| s.timeout = zero)),
        ("sync_timeout_connect", Box::new(move |s| s.sync_timeout_connect = zero)),
        ("sync_timeout_read", Box::new(move |s| s.sync_timeout_read = zero)),
        ("async_timeout_connect", Box::new(move |s| s.async_timeout_connect = zero)),
        ("async_timeout_sock_read", Box::new(move |s| s.async_timeout_sock_read = zero)),
        ("slow_request_threshold", Box::new(move |s| s.slow_request_threshold = zero)),
        ("pool_timeout", Box::new(move |s| s.pool_timeout = zero)),
        ("keepalive_expiry", Box::new(move |s| s.keepalive_expiry = zero)),
        ("max_connection_lifetime", Box::new(move |s| s.max_connection_lifetime = Some(zero))),
        ("http2_ping_interval", Box::new(move |s| s.http2_ping_interval = Some(zero))),
        ("http2_ping_timeout", Box::new(move |s| s.http2_ping_timeout = zero)),
        ("max_response_bytes", Box::new(|s| s.max_response_bytes = 0)),
        ("rate_limit_per_minute", Box::new(|s| s.rate_limit_per_minute = Some(0))),
        ("rate_limit_burst", Box::new(|s| s.rate_limit_burst = 0)),
        ("max_waiters", Box::new(|s| s.max_waiters = 2_000_000)),
        ("breaker.failure_threshold", Box::new(|s| s.breaker.failure_threshold = 1_000_000)),
        ("breaker.success_threshold", Box::new(|s| s.breaker.success_threshold = 0)),
        ("health.check_timeout", Box::new(move |s| s.health.check_timeout = zero)),
        ("health.check_jitter", Box::new(|s| s.health.check_jitter = 2.0)),
        ("retry.max_retries", Box::new(|s| s.retry.max_retries = 21)),
        ("retry.backoff.initial", Box::new(move |s| s.retry.backoff.initial = zero)),
        ("retry.backoff.multiplier", Box::new(|s| s.retry.backoff.multiplier = f64::NAN)),
        ("retry.budget.retry_percent", Box::new(|s| s.retry.budget.retry_percent = -1.0)),
    ];
    for (field, change) in cases {
        let (named, problem) = refused(with_session(change));
        assert_eq!(named, field, "{problem}");
        assert!(!problem.is_empty());
    }
}

#[tokio::test]
async fn invalid_client_fields_are_named() {
    let base = || ClientConfig { base_url: "http://127.0.0.1:1".into(), ..ClientConfig::default() };
    let cases: Vec<(&str, ClientConfig)> = vec![
        ("base_url", ClientConfig { base_url: "ftp://example.com".into(), ..base() }),
        ("base_url", ClientConfig { base_url: "not a url".into(), ..base() }),
        ("base_url", ClientConfig { base_url: "https://user:pw@example.com".into(), ..base() }),
        ("base_url", ClientConfig { base_url: "https://example.com/?key=1".into(), ..base() }),
        (
            "regions[1].base_url",
            ClientConfig {
                regions: vec![Region::new("a", "http://127.0.0.1:1"), Region::new("b", "gopher://x")],
                ..base()
            },
        ),
        ("regions[0].name", ClientConfig { regions: vec![Region::new(" ", "http://127.0.0.1:1")], ..base() }),
        (
            "regions[1].name",
            ClientConfig {
                regions: vec![Region::new("a", "http://127.0.0.1:1"), Region::new("a", "http://127.0.0.1:2")],
                ..base()
            },
        ),
        ("user_agent", ClientConfig { user_agent: "bad\nagent".into(), ..base() }),
        ("user_agent", ClientConfig { user_agent: "bot/1.0 (café)".into(), ..base() }),
        ("health_check_path", ClientConfig { health_check_path: "v1/models".into(), ..base() }),
        ("health_check_path", ClientConfig { health_check_path: "/a b".into(), ..base() }),
        ("max_redirects", ClientConfig { max_redirects: 1000, ..base() }),
    ];
    for (field, config) in cases {
        let shown = format!("{config:?}");
        let (named, problem) = refused(config);
        assert_eq!(named, field, "{shown}: {problem}");
    }
}

#[tokio::test]
async fn an_unusable_api_key_is_refused_without_showing_it() {
    for key in ["sk_with space_inside", "sk_newline\n_inside", "sk_ünicode"] {
        let config = ClientConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Some(blossom_client::ApiKey::new(key)),
            ..ClientConfig::default()
        };
        let err = BlossomClient::builder().config(config).build().unwrap_err();
        assert!(matches!(&err, Error::Config { field, .. } if field == "api_key"), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(key.trim()), "{shown}");
    }
    let err = BlossomClient::builder().base_url("http://127.0.0.1:1").api_key("   ").build().unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "api_key"), "{err:?}");
}

#[tokio::test]
async fn toml_errors_name_the_field() {
    let err = ClientConfig::from_toml_str("[session]\nsync_pool_size = 3").unwrap_err();
    assert!(err.to_string().contains("sync_pool_size"), "{err}");
    let config = ClientConfig::from_toml_str("base_url = \"http://127.0.0.1:1\"\n[session]\ntimeout = 0").unwrap();
    assert_eq!(refused(config).0, "timeout");
}

#[test]
fn the_async_client_needs_a_runtime() {
    let err = BlossomClient::builder().base_url("http://127.0.0.1:1").build().unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "runtime"), "{err:?}");
}

#[test]
fn the_blocking_client_validates_too() {
    let config = with_session(|s| s.sync_pool_maxsize = 0);
    let err = blossom_client::blocking::BlossomClient::with_config(config).unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "sync_pool_maxsize"), "{err:?}");
}

#[tokio::test]
async fn a_valid_config_builds() {
    let (_server, addr) = common::mock().await;
    let client = common::client(addr, |_| {});
    client.text().generate("hi").await.unwrap();
}
