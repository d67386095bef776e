//! The headers a request to a region carries, built once: cloning a small map costs less than
//! hashing each name into a new one, and the request path builds one per attempt.

use http::{HeaderMap, HeaderValue, header};

use crate::error::Error;

/// The `Accept` and `Content-Type` pairs the API sends. Another pair is filled in per request.
const COMMON: &[(&str, Option<&str>)] = &[
    ("text/plain", None),
    ("application/json", None),
    ("application/json", Some("application/json")),
    ("text/event-stream", Some("application/json")),
    ("image/*", None),
];

/// One region's header maps: for each protocol, one per pair in `COMMON`.
#[derive(Debug)]
pub(crate) struct RegionHeaders {
    http1: Vec<HeaderMap>,
    http2: Vec<HeaderMap>,
}

impl RegionHeaders {
    /// `Host` goes into the HTTP/1.1 maps only: HTTP/2 carries the authority in the URI.
    pub(crate) fn new(host: &HeaderValue, user_agent: &HeaderValue, authorization: Option<&HeaderValue>) -> Self {
        let build = |host: Option<&HeaderValue>| -> Vec<HeaderMap> {
            COMMON
                .iter()
                .map(|&(accept, content_type)| {
                    let mut map = HeaderMap::with_capacity(5);
                    fill(&mut map, accept, content_type);
                    map.insert(header::USER_AGENT, user_agent.clone());
                    if let Some(host) = host {
                        map.insert(header::HOST, host.clone());
                    }
                    if let Some(value) = authorization {
                        map.insert(header::AUTHORIZATION, value.clone());
                    }
                    map
                })
                .collect()
        };
        RegionHeaders { http1: build(Some(host)), http2: build(None) }
    }

    /// The headers of a request that accepts `accept` and sends `content_type`; refused if
    /// either is not a valid header value (a spec written by hand).
    pub(crate) fn for_request(
        &self,
        h2: bool,
        accept: &'static str,
        content_type: Option<&'static str>,
    ) -> Result<HeaderMap, Error> {
        let maps = if h2 { &self.http2 } else { &self.http1 };
        match COMMON.iter().position(|&pair| pair == (accept, content_type)) {
            Some(i) => Ok(maps[i].clone()),
            None => {
                let mut map = maps[0].clone();
                map.insert(header::ACCEPT, checked_value("accept", accept)?);
                if let Some(content_type) = content_type {
                    map.insert(header::CONTENT_TYPE, checked_value("content_type", content_type)?);
                }
                Ok(map)
            }
        }
    }
}

/// `value` as a header value, if it is one of visible ASCII (what `HeaderValue::to_str` reads
/// back, and `from_static` takes); else an error naming `field`.
fn checked_value(field: &str, value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value)
        .ok()
        .filter(|parsed| parsed.to_str().is_ok())
        .ok_or_else(|| Error::invalid_input(format!("`{field}` is not a valid header value: {value:?}")))
}

fn fill(map: &mut HeaderMap, accept: &'static str, content_type: Option<&'static str>) {
    map.insert(header::ACCEPT, HeaderValue::from_static(accept));
    if let Some(content_type) = content_type {
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> RegionHeaders {
        let mut key = HeaderValue::from_static("Bearer k");
        key.set_sensitive(true);
        RegionHeaders::new(&HeaderValue::from_static("h:1"), &HeaderValue::from_static("ua"), Some(&key))
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = map.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn a_common_pair_and_an_unusual_one_carry_the_same_headers_as_filled_by_hand() {
        let headers = headers();
        for (accept, content_type) in COMMON.iter().copied().chain([("text/csv", Some("text/csv")), ("x/y", None)]) {
            for h2 in [false, true] {
                let map = headers.for_request(h2, accept, content_type).unwrap();
                let mut expected = vec![
                    ("accept".to_string(), accept.to_string()),
                    ("authorization".to_string(), "Bearer k".to_string()),
                    ("user-agent".to_string(), "ua".to_string()),
                ];
                if let Some(content_type) = content_type {
                    expected.push(("content-type".into(), content_type.into()));
                }
                if !h2 {
                    expected.push(("host".into(), "h:1".into()));
                }
                expected.sort();
                assert_eq!(pairs(&map), expected, "accept {accept}, content type {content_type:?}, h2 {h2}");
                assert!(map[header::AUTHORIZATION].is_sensitive(), "the key stays marked sensitive");
            }
        }
    }

    #[test]
    fn a_value_no_header_may_carry_is_refused_with_its_field_named() {
        let headers = headers();
        for (accept, content_type, field) in
            [("text/plain\r\nx-injected: 1", None, "`accept`"), ("x/y", Some("caf\u{e9}"), "`content_type`")]
        {
            let err = headers.for_request(false, accept, content_type).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(headers.for_request(false, "x/y", Some("a\tb")).is_ok(), "a tab is allowed");
    }
}
