//! Link previews: which URLs of a message get one (Part B §5.9), the YouTube and Vimeo forms
//! that need no fetch, and what a fetched page says about itself (OpenGraph, then `<title>` and
//! the description meta tag).
//!
//! Pages are read by a tolerant scanner of `<meta>` and `<title>` tags, not a full HTML parser:
//! a preview needs a handful of attributes, and the body it reads is capped (1 MiB) before it
//! gets here. Fetching (SSRF-guarded) is `hooks::client::HookClient::get_html`; when and where
//! it happens is `chat::previews`.

use serde::{Deserialize, Serialize};

/// URLs previewed per message.
pub const MAX_URLS: usize = 3;
/// Longest kept title, description and URL.
const MAX_TITLE: usize = 300;
const MAX_DESCRIPTION: usize = 1_000;
const MAX_URL: usize = 2_048;

/// Top-level domains a bare domain (without `http://`) is recognised by.
const BARE_TLDS: [&str; 14] = [
    "com", "org", "net", "io", "co", "edu", "gov", "info", "biz", "me", "tv", "app", "dev", "ai",
];

/// A video a page announces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkVideo {
    pub url: String,
    pub kind: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub embed_url: Option<String>,
}

/// What a link shows in a message (the original's `link_previews` item).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPreview {
    pub url: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub image: Option<String>,
    pub site_name: Option<String>,
    pub video: Option<LinkVideo>,
}

impl LinkPreview {
    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && self.image.is_none()
    }
}

fn trim_url_end(s: &str) -> &str {
    s.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"', '>'])
}

/// The URLs of `text` that get previews, in order, at most [`MAX_URLS`]: `http(s)://…`, and
/// bare domains of common top-level domains (as `https://`).
pub fn find_urls(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if out.len() == MAX_URLS {
            break;
        }
        let word = word.trim_start_matches(['(', '[', '<', '"', '\'']);
        let url = if has_scheme(word) {
            let u = trim_url_end(word);
            (u.len() > 8 && u.len() <= MAX_URL).then(|| u.to_string())
        } else {
            bare_domain(trim_url_end(word)).map(|d| format!("https://{d}"))
        };
        if let Some(u) = url {
            if !out.contains(&u) {
                out.push(u);
            }
        }
    }
    out
}

/// `example.com/path` → itself, when its host ends in one of [`BARE_TLDS`].
fn bare_domain(word: &str) -> Option<&str> {
    if word.contains('@') || word.len() > MAX_URL {
        return None;
    }
    let host = word.split(['/', '?', '#']).next()?;
    let (name, tld) = host.rsplit_once('.')?;
    let labels_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    (labels_ok && BARE_TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))).then_some(word)
}

/// Whether `word` starts with `http://` or `https://`, in any case.
fn has_scheme(word: &str) -> bool {
    let starts = |p: &str| {
        word.get(..p.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(p))
    };
    starts("http://") || starts("https://")
}

/// Whether a message's text has anything to preview (the applier asks, on every send).
/// The same words as [`find_urls`], without building them: every replica asks this of every
/// new message.
pub fn has_urls(text: &str) -> bool {
    text.contains('.')
        && text.split_whitespace().any(|word| {
            let word = word.trim_start_matches(['(', '[', '<', '"', '\'']);
            let url = trim_url_end(word);
            if has_scheme(word) {
                url.len() > 8 && url.len() <= MAX_URL
            } else {
                bare_domain(url).is_some()
            }
        })
}

/// A YouTube video id (`watch?v=`, `youtu.be/`, `/embed/`; 11 characters).
fn youtube_id(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.contains("youtube.com/") || lower.contains("youtu.be/")) {
        return None;
    }
    let after = ["watch?v=", "&v=", "youtu.be/", "/embed/", "/shorts/"]
        .iter()
        .find_map(|m| url.find(m).map(|i| &url[i + m.len()..]))?;
    let id: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (id.len() == 11).then_some(id)
}

/// A Vimeo video id (`vimeo.com/[video/]<digits>`).
fn vimeo_id(url: &str) -> Option<String> {
    let i = url.to_ascii_lowercase().find("vimeo.com/")?;
    let rest = &url[i + "vimeo.com/".len()..];
    let rest = rest.strip_prefix("video/").unwrap_or(rest);
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

/// The preview a video URL has without fetching (its page may still add a title).
pub fn known(url: &str) -> Option<LinkPreview> {
    if let Some(id) = youtube_id(url) {
        return Some(LinkPreview {
            url: url.to_string(),
            title: Some(format!("YouTube Video: {id}")),
            description: None,
            image: Some(format!("https://img.youtube.com/vi/{id}/maxresdefault.jpg")),
            site_name: Some("YouTube".into()),
            video: Some(LinkVideo {
                url: url.to_string(),
                kind: Some("video/mp4".into()),
                width: Some(1280),
                height: Some(720),
                embed_url: Some(format!("https://www.youtube.com/embed/{id}")),
            }),
        });
    }
    vimeo_id(url).map(|id| LinkPreview {
        url: url.to_string(),
        title: None,
        description: None,
        image: None,
        site_name: Some("Vimeo".into()),
        video: Some(LinkVideo {
            url: url.to_string(),
            kind: None,
            width: None,
            height: None,
            embed_url: Some(format!("https://player.vimeo.com/video/{id}")),
        }),
    })
}

/// Decodes the entities pages use in attributes and titles.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ if name.starts_with("#x") || name.starts_with("#X") => {
                    u32::from_str_radix(&name[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The attributes of a tag's inside (`meta property="og:title" content="…"`), names
/// lower-cased.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let from = i + 1;
                let to = tag[from..]
                    .bytes()
                    .position(|b| b == quote)
                    .map_or(tag.len(), |p| from + p);
                i = (to + 1).min(tag.len());
                &tag[from..to]
            } else {
                let from = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                &tag[from..i]
            };
            if !name.is_empty() {
                out.push((name, decode_entities(value)));
            }
        } else if !name.is_empty() {
            out.push((name, String::new()));
        }
    }
    out
}

fn clip(s: &str, max: usize) -> Option<String> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        return None;
    }
    Some(s.chars().take(max).collect())
}

/// An absolute http(s) URL of `href` found on the page at `base`.
fn absolute(base: &str, href: &str) -> Option<String> {
    let base = reqwest::Url::parse(base).ok()?;
    let url = base.join(href.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.as_str().len() <= MAX_URL)
        .then(|| url.to_string())
}

/// What the page at `url` says about itself; `start` is the preview known without fetching,
/// if any, whose fields the page's OpenGraph tags override.
pub fn from_html(url: &str, html: &str, start: Option<LinkPreview>) -> LinkPreview {
    let mut p = start.unwrap_or_else(|| LinkPreview {
        url: url.to_string(),
        ..LinkPreview::default()
    });
    let (mut title_tag, mut description) = (None, None);
    let mut video = p.video.clone().unwrap_or_default();
    let mut has_video = p.video.is_some();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find('<') {
        let start = at + i + 1;
        let Some(len) = lower[start..].find('>') else {
            break;
        };
        let inside = &html[start..start + len];
        let name_end = inside
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(inside.len());
        let name = inside[..name_end].to_ascii_lowercase();
        at = start + len + 1;
        if name == "title" && title_tag.is_none() {
            if let Some(end) = lower[at..].find("</title") {
                title_tag = clip(&decode_entities(&html[at..at + end]), MAX_TITLE);
            }
        } else if name == "meta" {
            let attrs = attributes(&inside[name_end..]);
            let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let key = get("property").or_else(|| get("name")).unwrap_or_default();
            let Some(content) = get("content") else {
                continue;
            };
            match key.to_ascii_lowercase().as_str() {
                "og:title" => p.title = clip(content, MAX_TITLE),
                "og:description" => p.description = clip(content, MAX_DESCRIPTION),
                "og:image" | "og:image:url" if p.image.is_none() || key == "og:image" => {
                    p.image = absolute(url, content).or(p.image.take())
                }
                "og:site_name" => p.site_name = clip(content, MAX_TITLE),
                "og:video" | "og:video:url" | "og:video:secure_url" => {
                    if let Some(v) = absolute(url, content) {
                        video.url = v;
                        has_video = true;
                    }
                }
                "og:video:type" => video.kind = clip(content, 100),
                "og:video:width" => video.width = content.trim().parse().ok(),
                "og:video:height" => video.height = content.trim().parse().ok(),
                "description" if description.is_none() => {
                    description = clip(content, MAX_DESCRIPTION)
                }
                _ => {}
            }
        } else if name == "body" {
            // Everything a preview needs is in the head.
            break;
        }
    }
    if p.title.is_none() {
        p.title = title_tag;
    }
    if p.description.is_none() {
        p.description = description;
    }
    if has_video && !video.url.is_empty() {
        p.video = Some(video);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_found_as_the_original_found_them() {
        let t =
            "see https://example.com/a?b=1, and (http://x.org/p). also github.io and me@mail.com \
                 and www.rust-lang.org/learn! plus https://a.com https://b.com";
        assert_eq!(
            find_urls(t),
            vec![
                "https://example.com/a?b=1",
                "http://x.org/p",
                "https://github.io",
            ]
        );
        assert_eq!(find_urls("version 1.2 and file.txt"), Vec::<String>::new());
        assert!(!has_urls("no links here"));
        for t in [
            t,
            "a.b c.d",
            "HTTPS://X.ORG",
            "http://",
            "end. (see example.com).",
            "x@y.com",
        ] {
            assert_eq!(has_urls(t), !find_urls(t).is_empty(), "{t}");
        }
        assert!(has_urls("go to example.dev"));
    }

    #[test]
    fn videos_need_no_fetch() {
        let y = known("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=1").unwrap();
        assert_eq!(y.title.as_deref(), Some("YouTube Video: dQw4w9WgXcQ"));
        assert_eq!(
            y.video.unwrap().embed_url.as_deref(),
            Some("https://www.youtube.com/embed/dQw4w9WgXcQ")
        );
        assert!(known("https://youtu.be/dQw4w9WgXcQ").is_some());
        let v = known("https://vimeo.com/video/76979871").unwrap();
        assert_eq!(
            v.video.unwrap().embed_url.as_deref(),
            Some("https://player.vimeo.com/video/76979871")
        );
        assert!(known("https://example.com/watch?v=x").is_none());
    }

    #[test]
    fn pages_describe_themselves() {
        let html = r#"<!doctype html><html><head>
            <TITLE> Plain &amp; simple </TITLE>
            <meta name="description" content="The fallback">
            <meta property='og:title' content="Open &quot;Graph&quot; title">
            <meta property="og:image" content="/img/card.png">
            <meta property=og:site_name content=Example>
            <meta property="og:video" content="https://example.com/v.mp4">
            <meta property="og:video:width" content="640">
            </head><body><meta property="og:title" content="ignored"></body></html>"#;
        let p = from_html("https://example.com/page", html, None);
        assert_eq!(p.title.as_deref(), Some("Open \"Graph\" title"));
        assert_eq!(p.description.as_deref(), Some("The fallback"));
        assert_eq!(p.image.as_deref(), Some("https://example.com/img/card.png"));
        assert_eq!(p.site_name.as_deref(), Some("Example"));
        let v = p.video.unwrap();
        assert_eq!(
            (v.url.as_str(), v.width),
            ("https://example.com/v.mp4", Some(640))
        );
        let bare = from_html("https://e.com", "<title>Only a title</title>", None);
        assert_eq!(bare.title.as_deref(), Some("Only a title"));
        assert!(from_html("https://e.com", "<p>nothing</p>", None).is_empty());
    }
}
