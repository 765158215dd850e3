//! Image uploads made safe to serve: decoded under limits, turned upright, resized to at most
//! [`MAX_WIDTH`] wide, re-encoded (which drops EXIF and every other metadata block, GPS
//! position included), thumbnailed to at most [`THUMB_SIDE`] square, and summarised as a
//! blurhash. Blocking and CPU-heavy: callers run it on the blocking pool.
//!
//! Formats: JPEG stays JPEG (quality 85) and PNG stays PNG; WebP becomes PNG when it has
//! transparency, JPEG otherwise (the `image` crate only writes lossless WebP, several times
//! larger); GIF is kept as it is so animations survive (GIF carries no EXIF), with its first
//! frame for the thumbnail and blurhash. The stored content type is always the stored bytes'
//! (the original re-encoded PNGs as JPEG and kept calling them PNG).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Widest stored image; wider ones are scaled down (never up).
pub const MAX_WIDTH: u32 = 1200;
/// Thumbnails fit in this square.
pub const THUMB_SIDE: u32 = 300;
/// Images with more pixels are refused before they are decoded (a decompression bomb declares
/// huge dimensions in a few bytes).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most memory the decoder may allocate for one image.
pub const MAX_DECODE_ALLOC: u64 = 256 << 20;
/// Blurhash components (x, y) and the largest side it is computed from.
const BLURHASH_COMPONENTS: u32 = 4;
const BLURHASH_SIDE: u32 = 32;

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the image is {width}x{height}: more than {MAX_PIXELS} pixels")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    #[error("the image cannot be encoded: {0}")]
    Encode(String),
}

/// An encoded image.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// What an image upload stores.
#[derive(Clone, Debug)]
pub struct Processed {
    /// The image to store; None to store the uploaded bytes as they are (GIF).
    pub main: Option<Encoded>,
    pub thumb: Encoded,
    /// Of the stored image.
    pub width: u32,
    pub height: u32,
    pub blurhash: String,
}

fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Decodes `bytes` (of the sniffed `content_type`) under the limits, upright.
fn decode(bytes: &[u8], content_type: &str) -> Result<DynamicImage, ImageError> {
    let format = format_of(content_type)
        .ok_or_else(|| ImageError::Undecodable(format!("{content_type} is not an image type")))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Undecodable("the image has no pixels".into()));
    }
    let orientation = decoder.orientation().ok();
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ImageError::Undecodable(e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img)
}

fn encode(img: &DynamicImage, as_png: bool, jpeg_quality: u8) -> Result<Encoded, ImageError> {
    let mut out = Vec::new();
    if as_png {
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| ImageError::Encode(e.to_string()))?;
        Ok(Encoded {
            bytes: out,
            content_type: "image/png",
        })
    } else {
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut out, jpeg_quality))
            .map_err(|e| ImageError::Encode(e.to_string()))?;
        Ok(Encoded {
            bytes: out,
            content_type: "image/jpeg",
        })
    }
}

/// Processes an uploaded image (see the module docs).
pub fn process(bytes: &[u8], content_type: &str) -> Result<Processed, ImageError> {
    let img = decode(bytes, content_type)?;
    let alpha = img.color().has_alpha();
    let (main, stored) = if content_type == "image/gif" {
        (None, img)
    } else {
        let sized = if img.width() > MAX_WIDTH {
            img.resize(MAX_WIDTH, u32::MAX, FilterType::Triangle)
        } else {
            img
        };
        let as_png = match content_type {
            "image/png" => true,
            "image/webp" => alpha,
            _ => false,
        };
        (Some(encode(&sized, as_png, 85)?), sized)
    };
    let thumb_img = if stored.width() > THUMB_SIDE || stored.height() > THUMB_SIDE {
        stored.thumbnail(THUMB_SIDE, THUMB_SIDE)
    } else {
        stored.clone()
    };
    let thumb = encode(&thumb_img, alpha, 80)?;
    let small = thumb_img.thumbnail(BLURHASH_SIDE, BLURHASH_SIDE).to_rgba8();
    let blurhash = blurhash::encode(
        BLURHASH_COMPONENTS,
        BLURHASH_COMPONENTS,
        small.width(),
        small.height(),
        small.as_raw(),
    )
    .map_err(|e| ImageError::Encode(format!("blurhash: {e}")))?;
    Ok(Processed {
        main,
        thumb,
        width: stored.width(),
        height: stored.height(),
        blurhash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbaImage::from_fn(w, h, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_wide_photo_is_scaled_thumbnailed_and_blurhashed() {
        let img = RgbImage::from_fn(2400, 1200, |x, _| Rgb([(x / 10) as u8, 40, 200]));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 90))
            .unwrap();
        let p = process(&jpeg, "image/jpeg").unwrap();
        assert_eq!((p.width, p.height), (1200, 600));
        let main = p.main.unwrap();
        assert_eq!(main.content_type, "image/jpeg");
        let back = image::load_from_memory(&main.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (1200, 600));
        let thumb = image::load_from_memory(&p.thumb.bytes).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (300, 150));
        // 4x4 components: size flag, maximum, DC (4) and 15 AC values (2 each).
        assert_eq!(p.blurhash.len(), 36, "{}", p.blurhash);
    }

    #[test]
    fn a_png_stays_a_png_and_small_images_are_not_enlarged() {
        let p = process(&png(40, 20), "image/png").unwrap();
        assert_eq!((p.width, p.height), (40, 20));
        assert_eq!(p.main.unwrap().content_type, "image/png");
        assert_eq!(p.thumb.content_type, "image/png");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn hostile_images_are_refused_not_decoded() {
        // A PNG header declaring 100,000 x 100,000 pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        // The IHDR chunk's CRC, so the decoder reads the header instead of refusing its CRC.
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            process(&bomb, "image/png"),
            Err(ImageError::TooManyPixels { width: 100_000, .. })
        ));
        // Truncated.
        let whole = png(64, 64);
        assert!(matches!(
            process(&whole[..whole.len() / 2], "image/png"),
            Err(ImageError::Undecodable(_))
        ));
        // Not an image at all.
        assert!(process(b"\xff\xd8\xff garbage", "image/jpeg").is_err());
    }
}
