//! Image generation: `GET /image/{prompt}`, answered with image bytes.

use bytes::Bytes;

use super::{Query, RequestSpec, check_model, check_range_f32};
use crate::error::{Error, clean};

/// Smallest and largest accepted width and height, in pixels.
const SIDE_RANGE: std::ops::RangeInclusive<u32> = 64..=4096;

/// Image quality tier (`quality=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `hd`.
    Hd,
}

impl Quality {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
            Quality::Hd => "hd",
        }
    }
}

/// Options of an image request. Flags are sent only when true.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    /// Model name (`flux`, `turbo`, ...). Default: unset (the server's default).
    pub model: Option<String>,
    /// Width in pixels, in `64..=4096`. Default: 1024.
    pub width: u32,
    /// Height in pixels, in `64..=4096`. Default: 1024.
    pub height: u32,
    /// Seed for reproducible output. Default: unset.
    pub seed: Option<u64>,
    /// Let the server rewrite the prompt with an LLM. Default: false.
    pub enhance: bool,
    /// What the image should not show. Default: unset.
    pub negative_prompt: Option<String>,
    /// Keep the image out of the public feed. Default: false.
    pub private: bool,
    /// Remove the Pollinations logo. Default: false.
    pub nologo: bool,
    /// Do not publish to the feed. Default: false.
    pub nofeed: bool,
    /// Strict content filtering. Default: false.
    pub safe: bool,
    /// Quality tier. Default: unset.
    pub quality: Option<Quality>,
    /// Transparent background (models that support it). Default: false.
    pub transparent: bool,
    /// How closely to follow the prompt, in `0.0..=30.0`. Default: unset.
    pub guidance_scale: Option<f32>,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            model: None,
            width: 1024,
            height: 1024,
            seed: None,
            enhance: false,
            negative_prompt: None,
            private: false,
            nologo: false,
            nofeed: false,
            safe: false,
            quality: None,
            transparent: false,
            guidance_scale: None,
        }
    }
}

/// The path and query of an image request, validated.
fn image_path(prompt: &str, o: &ImageOptions) -> Result<String, Error> {
    check_model(o.model.as_deref())?;
    for (name, side) in [("width", o.width), ("height", o.height)] {
        if !SIDE_RANGE.contains(&side) {
            return Err(Error::invalid_input(format!(
                "`{name}` must be in {}..={} pixels, got {side}",
                SIDE_RANGE.start(),
                SIDE_RANGE.end()
            )));
        }
    }
    check_range_f32("guidance_scale", o.guidance_scale, 0.0, 30.0)?;
    let mut q = Query::with_prompt("/image/", prompt)?;
    q.push("width", o.width)
        .push("height", o.height)
        .push_opt("seed", o.seed)
        .push_opt("model", o.model.as_deref())
        .push_flag("enhance", o.enhance)
        .push_opt("negative_prompt", o.negative_prompt.as_deref())
        .push_flag("private", o.private)
        .push_flag("nologo", o.nologo)
        .push_flag("nofeed", o.nofeed)
        .push_flag("safe", o.safe)
        .push_opt("quality", o.quality.map(Quality::as_str))
        .push_flag("transparent", o.transparent)
        .push_opt("guidance_scale", o.guidance_scale);
    Ok(q.finish())
}

/// Builds `GET /image/{prompt}?width=..&height=..&seed=..&model=..&...` (width and height
/// always, other options only when set or true).
///
/// Refuses a blank prompt, a blank model, a side outside `64..=4096`, a `guidance_scale`
/// outside `0..=30` and URLs longer than [`super::MAX_PATH_AND_QUERY_BYTES`].
pub fn image_request(prompt: &str, options: &ImageOptions) -> Result<RequestSpec, Error> {
    RequestSpec::get(image_path(prompt, options)?, "image/*")
}

/// A link to the image, `base_url` followed by the request's path and query, for embedding or
/// sharing.
///
/// The link carries no key: it is public, and must stay so (do not append `key=`). `base_url`
/// must start with `http://` or `https://` and have no query or fragment; a trailing `/` is
/// dropped.
pub fn image_url(base_url: &str, prompt: &str, options: &ImageOptions) -> Result<String, Error> {
    let base = base_url.trim_end_matches('/');
    let has_scheme = base.starts_with("https://") || base.starts_with("http://");
    if !has_scheme || base.contains(['?', '#']) || base.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_input(
            "`base_url` must be an http(s) url without query or fragment, e.g. https://gen.pollinations.ai",
        ));
    }
    Ok(format!("{base}{}", image_request(prompt, options)?.path_and_query))
}

/// A generated image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The encoded image (JPEG, PNG, ...).
    pub bytes: Bytes,
    /// Its media type, e.g. `image/jpeg`.
    pub content_type: String,
}

/// Checks an image response: a non-empty body with an `image/*` content type.
///
/// A missing or `application/octet-stream` content type is accepted if the bytes start like a
/// JPEG, PNG, GIF or WebP (the type is then taken from them). An empty body is
/// [`Error::EmptyResponse`]; anything else (a JSON or HTML page sent with status 200) is
/// [`Error::InvalidResponse`] quoting the start of the body.
pub fn check_image_response(content_type: Option<&str>, body: Bytes) -> Result<Image, Error> {
    if body.is_empty() {
        return Err(Error::EmptyResponse);
    }
    let essence = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some(e) if e.starts_with("image/") && e.len() > "image/".len() => {
            return Ok(Image { bytes: body, content_type: e.to_owned() });
        }
        None | Some("" | "application/octet-stream") => {
            if let Some(sniffed) = sniff_image(&body) {
                return Ok(Image { bytes: body, content_type: sniffed.to_owned() });
            }
        }
        _ => {}
    }
    let excerpt = clean(&String::from_utf8_lossy(&body[..body.len().min(600)]), 120);
    Err(Error::invalid_response(format!(
        "expected an image, got {} ({} bytes): {excerpt}",
        essence.as_deref().filter(|e| !e.is_empty()).unwrap_or("no content type"),
        body.len()
    )))
}

/// The media type the magic bytes announce, if it is a common image format.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_request_sends_the_size() {
        let spec = image_request("a cat", &ImageOptions::default()).unwrap();
        assert_eq!(spec.method, http::Method::GET);
        assert_eq!(spec.path_and_query, "/image/a%20cat?width=1024&height=1024");
        assert_eq!((spec.accept, spec.idempotent, spec.body), ("image/*", true, None));
    }

    #[test]
    fn sends_every_option() {
        let options = ImageOptions {
            model: Some("flux".into()),
            width: 512,
            height: 768,
            seed: Some(1),
            enhance: true,
            negative_prompt: Some("blurry, text".into()),
            private: true,
            nologo: true,
            nofeed: true,
            safe: true,
            quality: Some(Quality::Hd),
            transparent: true,
            guidance_scale: Some(7.5),
        };
        let spec = image_request("fox #1 / night", &options).unwrap();
        assert_eq!(
            spec.path_and_query,
            "/image/fox%20%231%20%2F%20night?width=512&height=768&seed=1&model=flux&enhance=true\
             &negative_prompt=blurry%2C%20text&private=true&nologo=true&nofeed=true&safe=true&quality=hd\
             &transparent=true&guidance_scale=7.5"
        );
    }

    #[test]
    fn refuses_bad_options() {
        let bad = [
            ImageOptions { width: 63, ..Default::default() },
            ImageOptions { height: 4097, ..Default::default() },
            ImageOptions { guidance_scale: Some(-1.0), ..Default::default() },
            ImageOptions { model: Some(String::new()), ..Default::default() },
        ];
        for options in bad {
            assert!(matches!(image_request("x", &options), Err(Error::InvalidInput { .. })), "{options:?}");
        }
        assert!(image_request(" ", &ImageOptions::default()).is_err());
        assert!(image_request("x", &ImageOptions { width: 64, height: 4096, ..Default::default() }).is_ok());
    }

    #[test]
    fn builds_public_urls() {
        let url = image_url("https://gen.pollinations.ai/", "..", &ImageOptions::default()).unwrap();
        assert_eq!(url, "https://gen.pollinations.ai/image/%2E%2E?width=1024&height=1024");
        let url = image_url("http://localhost:8080/proxy", "a", &ImageOptions::default()).unwrap();
        assert_eq!(url, "http://localhost:8080/proxy/image/a?width=1024&height=1024");
        for bad in ["gen.pollinations.ai", "https://x/?key=sk_1", "https://x/#f", "ftp://x", "https://x y"] {
            assert!(image_url(bad, "a", &ImageOptions::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_images_by_content_type_or_magic() {
        let jpeg = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]);
        let img = check_image_response(Some("image/jpeg"), jpeg.clone()).unwrap();
        assert_eq!((img.content_type.as_str(), img.bytes.len()), ("image/jpeg", 6));
        let img = check_image_response(Some("Image/PNG; charset=binary"), Bytes::from_static(b"x")).unwrap();
        assert_eq!(img.content_type, "image/png");
        assert_eq!(check_image_response(None, jpeg.clone()).unwrap().content_type, "image/jpeg");
        let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n....");
        assert_eq!(check_image_response(Some("application/octet-stream"), png).unwrap().content_type, "image/png");
        let webp = Bytes::from_static(b"RIFF\0\0\0\0WEBPVP8 ");
        assert_eq!(check_image_response(None, webp).unwrap().content_type, "image/webp");
    }

    #[test]
    fn refuses_empty_and_non_image_bodies() {
        assert!(matches!(check_image_response(Some("image/jpeg"), Bytes::new()), Err(Error::EmptyResponse)));
        let err =
            check_image_response(Some("application/json"), Bytes::from_static(br#"{"error":"nsfw"}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid response: expected an image, got application/json (16 bytes): {"error":"nsfw"}"#
        );
        assert!(err.is_retryable());
        assert!(matches!(check_image_response(None, Bytes::from_static(b"hello")), Err(Error::InvalidResponse { .. })));
        assert!(matches!(
            check_image_response(Some("image/"), Bytes::from_static(b"x")),
            Err(Error::InvalidResponse { .. })
        ));
        let jpeg = Bytes::from_static(&[0xFF, 0xD8, 0xFF]);
        assert!(check_image_response(Some("text/html"), jpeg).is_err());
    }
}
