//! What a file is, from its first bytes; the client's word is used only to choose between
//! types the bytes cannot tell apart (a `.docx` is a zip, a CSV is text).

/// Bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 512;

/// Largest upload of each kind (configurable: `[media]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaLimits {
    pub image: u64,
    pub video: u64,
    /// Audio and documents.
    pub other: u64,
}

impl Default for MediaLimits {
    /// The original's limits (Part B §5.8).
    fn default() -> Self {
        MediaLimits {
            image: 10 << 20,
            video: 100 << 20,
            other: 50 << 20,
        }
    }
}

impl MediaLimits {
    /// The limit of a kind.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Image => self.image,
            Kind::Video => self.video,
            Kind::Audio | Kind::Document => self.other,
        }
    }

    /// The largest limit: what a body may hold before its type is known.
    pub fn largest(&self) -> u64 {
        self.image.max(self.video).max(self.other)
    }
}

/// The families uploads are limited and listed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Video,
    Audio,
    Document,
}

impl Kind {
    /// The kind a declared content type claims.
    pub fn of(content_type: &str) -> Kind {
        let ct = content_type.to_ascii_lowercase();
        if ct.starts_with("image/") {
            Kind::Image
        } else if ct.starts_with("video/") {
            Kind::Video
        } else if ct.starts_with("audio/") {
            Kind::Audio
        } else {
            Kind::Document
        }
    }
}

/// A file's type as its bytes show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: String,
    pub kind: Kind,
}

/// Zip-based office formats, accepted when the bytes are a zip and the client says so.
const ZIP_TYPES: [&str; 4] = [
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/epub+zip",
];

/// Text formats, accepted when the bytes are text and the client says so.
const TEXT_TYPES: [&str; 6] = [
    "text/csv",
    "text/markdown",
    "application/json",
    "text/calendar",
    "text/vcard",
    "text/x-log",
];

/// A content type without parameters, lower-cased (`Image/PNG; x=y` → `image/png`).
pub fn base_type(declared: &str) -> String {
    declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The type of a file whose first bytes are `head` (at most [`SNIFF_BYTES`] matter), or None
/// when it is not a type uploads accept. `declared` is the client's content type.
pub fn sniff(head: &[u8], declared: &str) -> Option<Sniffed> {
    let declared = base_type(declared);
    let (ct, kind): (String, Kind) = if let Some(t) = crate::chat::sniff_image(head) {
        (t.into(), Kind::Image)
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        let brand = &head[8..12];
        if brand == b"M4A " || brand == b"M4B " {
            ("audio/mp4".into(), Kind::Audio)
        } else if brand == b"qt  " {
            ("video/quicktime".into(), Kind::Video)
        } else if declared == "audio/mp4" || declared == "audio/m4a" || declared == "audio/x-m4a" {
            ("audio/mp4".into(), Kind::Audio)
        } else {
            ("video/mp4".into(), Kind::Video)
        }
    } else if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        if declared == "audio/webm" {
            ("audio/webm".into(), Kind::Audio)
        } else {
            ("video/webm".into(), Kind::Video)
        }
    } else if head.starts_with(b"ID3")
        || (head.len() >= 2 && head[0] == 0xFF && matches!(head[1], 0xFB | 0xF3 | 0xF2))
    {
        ("audio/mpeg".into(), Kind::Audio)
    } else if head.starts_with(b"OggS") {
        ("audio/ogg".into(), Kind::Audio)
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        ("audio/wav".into(), Kind::Audio)
    } else if head.starts_with(b"%PDF-") {
        ("application/pdf".into(), Kind::Document)
    } else if head.starts_with(b"PK\x03\x04") {
        let t = if ZIP_TYPES.contains(&declared.as_str()) {
            declared.clone()
        } else {
            "application/zip".into()
        };
        (t, Kind::Document)
    } else if is_text(head) {
        let t = if TEXT_TYPES.contains(&declared.as_str()) {
            declared.clone()
        } else {
            "text/plain".into()
        };
        (t, Kind::Document)
    } else {
        return None;
    };
    Some(Sniffed {
        content_type: ct,
        kind,
    })
}

/// Whether `head` reads as UTF-8 text without NULs (a character cut at the end is fine).
fn is_text(head: &[u8]) -> bool {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Whether a declared type and the sniffed one agree: same kind, and for images the same
/// format. An empty or generic declaration agrees with anything.
pub fn agrees(declared: &str, sniffed: &Sniffed) -> bool {
    let declared = base_type(declared);
    if declared.is_empty() || declared == "application/octet-stream" {
        return true;
    }
    let declared = if declared == "image/jpg" {
        "image/jpeg".to_string()
    } else {
        declared
    };
    match sniffed.kind {
        Kind::Image => declared == sniffed.content_type,
        kind => Kind::of(&declared) == kind,
    }
}

/// The file extension of a content type.
pub fn extension_of(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        "audio/webm" => "weba",
        "audio/mp4" => "m4a",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/wav" => "wav",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "text/markdown" => "md",
        "application/json" => "json",
        _ => "bin",
    }
}

/// Whether browsers may show the type inline (everything else is served as an attachment).
pub fn inline_safe(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "video/mp4"
            | "video/webm"
            | "video/quicktime"
            | "audio/mpeg"
            | "audio/ogg"
            | "audio/wav"
            | "audio/mp4"
            | "audio/webm"
            | "application/pdf"
            | "text/plain"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_decide_the_type() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        assert_eq!(sniff(png, "image/jpeg").unwrap().content_type, "image/png");
        assert!(!agrees("image/jpeg", &sniff(png, "").unwrap()));
        assert!(agrees("image/png", &sniff(png, "").unwrap()));
        let mp4 = b"\0\0\0\x18ftypisom\0\0\0\0";
        assert_eq!(sniff(mp4, "").unwrap().kind, Kind::Video);
        assert_eq!(
            sniff(b"%PDF-1.7", "").unwrap().content_type,
            "application/pdf"
        );
        assert_eq!(
            sniff(b"PK\x03\x04..", ZIP_TYPES[0]).unwrap().content_type,
            ZIP_TYPES[0]
        );
        assert_eq!(
            sniff(b"a,b\n1,2\n", "text/csv").unwrap().content_type,
            "text/csv"
        );
        assert_eq!(
            sniff(b"hello", "image/png").unwrap().content_type,
            "text/plain"
        );
        assert!(!agrees("image/png", &sniff(b"hello", "image/png").unwrap()));
        // A Windows executable, random binary: refused.
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0", ""), None);
        assert_eq!(sniff(&[0xde, 0xad, 0xbe, 0xef, 0, 1], ""), None);
        // A UTF-8 character cut at the end of the sniffed window is still text.
        let mut cut = "é".repeat(256).into_bytes();
        cut.truncate(SNIFF_BYTES - 1);
        assert!(is_text(&cut));
    }
}
