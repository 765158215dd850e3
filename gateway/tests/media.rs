//! Uploads over real sockets: direct and presigned uploads, image processing, media tokens,
//! ranges and caching, attachments, deletion with the message, and hostile input.

mod support;

use std::io::Cursor;

use chatsdk_gateway::GatewayConfig;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{json, Value};
use support::{assert_error, Cred, Res, Rest, TestNode};

/// A JPEG photo `w`×`h` with an EXIF block carrying a GPS tag name.
fn photo(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x / 10) as u8, (y / 10) as u8, 120]));
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let mut exif = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude 52.5200 N".to_vec();
    exif.resize(64, 0);
    let len = (exif.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, _| Rgb([x as u8, 0, 0]));
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .unwrap();
    out
}

/// A multipart body with `fields` and a `file` part.
fn form(fields: &[(&str, &str)], file: &[u8], name: &str, ct: &str) -> (String, Vec<u8>) {
    let boundary = "chatsdk-test-boundary-7d0a";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn direct(rest: &Rest, token: &str, channel: &str, file: &[u8], name: &str, ct: &str) -> Res {
    let (ctype, body) = form(&[("channelId", channel)], file, name, ct);
    let auth = format!("Bearer {token}");
    rest.raw(
        "POST",
        "/api/uploads/direct",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", ctype.as_str()),
        ],
        body,
    )
    .await
}

/// GET of a URL relative to the node: status, headers, bytes.
async fn fetch(
    rest: &Rest,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = rest.http.get(format!("{}{}", rest.base, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let h = res.headers().clone();
    (status, h, res.bytes().await.unwrap().to_vec())
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_photo_is_processed_attached_served_in_ranges_and_deleted_with_its_message() {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("media").await;
    for u in ["alice", "bob", "carol"] {
        rest.ensure_user(&key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ch = rest.group(&alice, "photos", &["bob"]).await;

    let r = direct(
        &rest,
        &alice,
        &ch,
        &photo(2400, 1200),
        "trip.jpg",
        "image/jpeg",
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let up = r.body.clone();
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(1200), Some(600))
    );
    assert_eq!(text(&up, "contentType"), "image/jpeg");
    assert_eq!(text(&up, "filename"), "trip.jpg");
    let blurhash = text(&up, "blurhash");
    assert!(blurhash.len() >= 20, "{blurhash}");
    let url = text(&up, "url");
    assert!(url.contains("mediaToken="), "{url}");

    // The file, with a media token and no other credentials: resized, EXIF gone.
    let (status, h, bytes) = fetch(&rest, &url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["cache-control"], "private, max-age=300");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    assert_eq!(bytes.len() as u64, up["size"].as_u64().unwrap());
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 600));
    assert!(!bytes.windows(4).any(|w| w == b"Exif"), "EXIF survived");
    assert!(
        !bytes.windows(11).any(|w| w == b"GPSLatitude"),
        "GPS survived"
    );
    let etag = h["etag"].to_str().unwrap().to_string();

    // Ranges and conditional requests.
    let (s, h, part) = fetch(&rest, &url, &[("Range", "bytes=0-99")]).await;
    assert_eq!((s, part.as_slice()), (206, &bytes[..100]));
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes 0-99/{}", bytes.len())
    );
    let (s, _, tail) = fetch(&rest, &url, &[("Range", "bytes=-10")]).await;
    assert_eq!((s, tail.as_slice()), (206, &bytes[bytes.len() - 10..]));
    let (s, h, _) = fetch(&rest, &url, &[("Range", "bytes=99999999-")]).await;
    assert_eq!(s, 416);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes */{}", bytes.len())
    );
    let (s, _, empty) = fetch(&rest, &url, &[("If-None-Match", etag.as_str())]).await;
    assert_eq!((s, empty.len()), (304, 0));

    // The thumbnail.
    let (s, _, thumb) = fetch(&rest, &text(&up, "thumbnailUrl"), &[]).await;
    assert_eq!(s, 200);
    let t = image::load_from_memory(&thumb).unwrap();
    assert_eq!((t.width(), t.height()), (300, 150));

    // Without a token: members read with their bearer token, others are refused.
    let upload_key = text(&up, "key");
    let plain = format!(
        "/api/uploads/content?key={}",
        chatsdk_actors::media::encode_component(&upload_key)
    );
    let (s, _, _) = fetch(&rest, &plain, &[]).await;
    assert_eq!(s, 401);
    let bob_auth = format!("Bearer {bob}");
    let (s, _, b) = fetch(&rest, &plain, &[("Authorization", bob_auth.as_str())]).await;
    assert_eq!((s, b.len()), (200, bytes.len()));
    let carol_auth = format!("Bearer {carol}");
    let (s, _, _) = fetch(&rest, &plain, &[("Authorization", carol_auth.as_str())]).await;
    assert_eq!(s, 403);
    let legacy = format!(
        "/api/uploads/{}/content",
        chatsdk_actors::media::encode_component(&upload_key)
    );
    let (s, _, _) = fetch(&rest, &legacy, &[("Authorization", bob_auth.as_str())]).await;
    assert_eq!(s, 200);
    // A forged or expired token, or one for another file, reads nothing.
    let forged = format!("{}x", url);
    assert_eq!(fetch(&rest, &forged, &[]).await.0, 401);
    let other_key = upload_key.replace(&text(&up, "id"), "0123456789abcdef0123456789abcdef");
    let token = url.split("mediaToken=").nth(1).unwrap();
    let misused = format!(
        "/api/uploads/content?key={}&mediaToken={token}",
        chatsdk_actors::media::encode_component(&other_key)
    );
    assert_eq!(fetch(&rest, &misused, &[]).await.0, 401);
    // Another app's key reads nothing of this app.
    let (_other, other_key) = node.app("other").await;
    let (s, _, _) = fetch(&rest, &plain, &[("X-API-Key", other_key.as_str())]).await;
    assert_eq!(s, 404);

    // A download link.
    let r = rest
        .call(
            "GET",
            &format!(
                "/api/uploads/{}/download",
                chatsdk_actors::media::encode_component(&upload_key)
            ),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!((r.status, r.body["expiresIn"].as_u64()), (200, Some(3600)));
    assert_eq!(fetch(&rest, &text(&r.body, "url"), &[]).await.0, 200);

    // Attached to a message: the attachment is completed from the upload and signed on reads.
    let r = rest
        .call(
            "POST",
            &format!("/api/channels/{ch}/messages"),
            Cred::Bearer(&alice),
            Some(json!({"text": "look", "attachments": [{"uploadId": text(&up, "id"), "title": "Trip"}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let a = &r.body["attachments"][0];
    assert_eq!(
        (text(a, "type"), text(a, "title")),
        ("image".into(), "Trip".into())
    );
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(1200), Some(600))
    );
    assert_eq!(text(a, "blurhash"), blurhash);
    assert_eq!(text(a, "mimeType"), "image/jpeg");
    let mid = text(&r.body, "id");
    let list = rest
        .call(
            "GET",
            &format!("/api/channels/{ch}/messages"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    let a = &list.body["messages"][0]["attachments"][0];
    assert_eq!(fetch(&rest, &text(a, "url"), &[]).await.0, 200);
    assert_eq!(fetch(&rest, &text(a, "thumbnailUrl"), &[]).await.0, 200);

    // An upload of another channel cannot be attached here.
    let other = rest.group(&alice, "photos", &[]).await;
    let r = rest
        .call(
            "POST",
            &format!("/api/channels/{other}/messages"),
            Cred::Bearer(&alice),
            Some(json!({"text": "x", "attachments": [{"url": text(&up, "url")}]})),
        )
        .await;
    assert_error(&r, 403, "ATTACHMENT_FORBIDDEN");

    // The channel's uploads.
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ch}/uploads?type=image"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["uploads"].as_array().unwrap().len(), 1);
    assert!(r.body["uploads"][0]["size"].is_u64());
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ch}/uploads?type=video"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(r.body["uploads"].as_array().unwrap().len(), 0);

    // Deleting the message takes the upload with it.
    let r = rest
        .call(
            "DELETE",
            &format!("/api/channels/{ch}/messages/{mid}"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(fetch(&rest, &url, &[]).await.0, 404);
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ch}/uploads"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(r.body["uploads"].as_array().unwrap().len(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_is_put_checked_and_confirmed() {
    let chat = chatsdk_actors::ChatConfig {
        presign_ttl: std::time::Duration::from_secs(3),
        ..support::test_chat_config()
    };
    let node = TestNode::start_chat(GatewayConfig::default(), chat).await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("presign").await;
    for u in ["alice", "bob"] {
        rest.ensure_user(&key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let ch = rest.group(&alice, "photos", &["bob"]).await;
    let pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let presign = |size: u64, ct: &'static str| {
        let rest = rest.clone();
        let (alice, ch) = (alice.clone(), ch.clone());
        async move {
            rest.call(
                "POST",
                "/api/uploads/presigned",
                Cred::Bearer(&alice),
                Some(json!({"channelId": ch, "filename": "doc.pdf", "contentType": ct, "size": size})),
            )
            .await
        }
    };
    assert_error(
        &presign(200 << 20, "application/pdf").await,
        400,
        "FILE_TOO_LARGE",
    );
    assert_error(&presign(11 << 20, "image/png").await, 400, "FILE_TOO_LARGE");

    let p = presign(pdf.len() as u64, "application/pdf").await;
    assert_eq!(p.status, 200, "{p:?}");
    let upload_key = text(&p.body, "key");
    let enc = chatsdk_actors::media::encode_component(&upload_key);
    let headers = p.body["headers"].clone();
    assert_eq!(text(&headers, "x-amz-meta-app-id"), app);
    let confirm = |who: String| {
        let (rest, enc) = (rest.clone(), enc.clone());
        async move {
            rest.call(
                "POST",
                &format!("/api/uploads/{enc}/confirm"),
                Cred::Bearer(&who),
                None,
            )
            .await
        }
    };
    // Confirmed before the bytes came: refused.
    assert_error(&confirm(alice.clone()).await, 400, "UPLOAD_NOT_FOUND");
    // Someone else's pending upload is not found.
    assert_eq!(confirm(bob.clone()).await.status, 404);

    let upload_url = text(&p.body, "uploadUrl");
    let path = &upload_url[upload_url.find("/api/").unwrap()..];
    let put = |body: Vec<u8>, by: &'static str| {
        let rest = rest.clone();
        let headers = headers.clone();
        let path = path.to_string();
        async move {
            let by = if by.is_empty() {
                text(&headers, "x-amz-meta-uploaded-by")
            } else {
                by.to_string()
            };
            rest.raw(
                "PUT",
                &path,
                &[
                    ("Content-Type", text(&headers, "Content-Type").as_str()),
                    (
                        "x-amz-meta-app-id",
                        text(&headers, "x-amz-meta-app-id").as_str(),
                    ),
                    ("x-amz-meta-uploaded-by", by.as_str()),
                    (
                        "x-amz-meta-channel-id",
                        text(&headers, "x-amz-meta-channel-id").as_str(),
                    ),
                ],
                body,
            )
            .await
        }
    };
    // More bytes than declared: refused before they are all read.
    let mut big = pdf.clone();
    big.extend_from_slice(&[b' '; 100]);
    assert_eq!(put(big, "").await.status, 413);
    // A forged upload URL is refused.
    let forged = rest
        .raw(
            "PUT",
            &format!("{path}x"),
            &[("Content-Type", "application/pdf")],
            pdf.clone(),
        )
        .await;
    assert_eq!(forged.status, 401);
    // Metadata that does not match: the confirmation says so.
    assert_eq!(put(pdf.clone(), "mallory").await.status, 200);
    assert_error(
        &confirm(alice.clone()).await,
        400,
        "UPLOAD_METADATA_MISMATCH",
    );
    // The right bytes and metadata: confirmed and readable.
    assert_eq!(put(pdf.clone(), "").await.status, 200);
    let c = confirm(alice.clone()).await;
    assert_eq!(c.status, 200, "{c:?}");
    assert_eq!(
        (text(&c.body, "status"), text(&c.body, "contentType")),
        ("completed".into(), "application/pdf".into())
    );
    let (s, h, bytes) = fetch(&rest, &text(&c.body, "url"), &[]).await;
    assert_eq!((s, bytes), (200, pdf.clone()));
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("doc.pdf"));
    // Confirmed once; a second confirmation finds nothing pending.
    assert_eq!(confirm(alice.clone()).await.status, 404);
    // Deleting one's own upload.
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("/api/uploads/{enc}"),
            Cred::Bearer(&bob),
            None
        )
        .await
        .status,
        404
    );
    let r = rest
        .call(
            "DELETE",
            &format!("/api/uploads/{enc}"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(fetch(&rest, &text(&c.body, "url"), &[]).await.0, 404);

    // Bytes that arrive but are never confirmed: dropped once the presign expires.
    let p = presign(pdf.len() as u64, "application/pdf").await;
    let stale_key = text(&p.body, "key");
    let upload_url = text(&p.body, "uploadUrl");
    let path = upload_url[upload_url.find("/api/").unwrap()..].to_string();
    let r = rest
        .raw(
            "PUT",
            &path,
            &[("Content-Type", "application/pdf")],
            pdf.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(node.chat.expire_pending_uploads().await.unwrap(), 0);
    let chat = node.chat.clone();
    support::eventually("the unconfirmed upload expires and is dropped", || {
        let chat = chat.clone();
        async move { chat.expire_pending_uploads().await.unwrap() == 1 }
    })
    .await;
    let stale = chatsdk_actors::media::encode_component(&stale_key);
    let r = rest
        .call(
            "POST",
            &format!("/api/uploads/{stale}/confirm"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_mislabelled_uploads_are_refused() {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("hostile").await;
    rest.ensure_user(&key, "alice").await;
    rest.ensure_user(&key, "eve").await;
    let (alice, _) = rest.login(&key, "alice").await;
    let (eve, _) = rest.login(&key, "eve").await;
    let ch = rest.group(&alice, "photos", &[]).await;

    // Not a member: refused.
    let r = direct(&rest, &eve, &ch, &png(4, 4), "a.png", "image/png").await;
    assert_eq!(r.status, 403, "{r:?}");
    // An executable: no type we take.
    let r = direct(
        &rest,
        &alice,
        &ch,
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff",
        "a.exe",
        "application/octet-stream",
    )
    .await;
    assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    // Text that says it is a PNG.
    let r = direct(&rest, &alice, &ch, b"just some text", "a.png", "image/png").await;
    assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    // A decompression bomb: a valid PNG header declaring 100,000 x 100,000 pixels.
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = direct(&rest, &alice, &ch, &bomb, "bomb.png", "image/png").await;
    assert_error(&r, 400, "INVALID_IMAGE");
    // A truncated image.
    let whole = png(200, 200);
    let r = direct(
        &rest,
        &alice,
        &ch,
        &whole[..whole.len() / 3],
        "cut.png",
        "image/png",
    )
    .await;
    assert_error(&r, 400, "INVALID_IMAGE");
    // An image past the image limit (10 MiB): refused while it arrives.
    let mut huge = png(1, 1);
    huge.resize(11 << 20, 0);
    let r = direct(&rest, &alice, &ch, &huge, "huge.png", "image/png").await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    // The unread rest of the body ends the connection: the answer says so, and the client
    // does not reuse it for the requests below.
    assert_eq!(
        r.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // A body that is not a form (no boundary, or JSON): our error, not the framework's text.
    let auth = format!("Bearer {alice}");
    for ctype in ["multipart/form-data", "application/json"] {
        for route in ["/api/uploads/direct", "/api/emoji"] {
            let r = rest
                .raw(
                    "POST",
                    route,
                    &[("Authorization", auth.as_str()), ("Content-Type", ctype)],
                    b"{}".to_vec(),
                )
                .await;
            assert_error(&r, 400, "BAD_REQUEST");
        }
    }
    // A body that declares more than any upload may be: refused before it is read (the
    // answer comes while the client has sent nothing but headers).
    let mut sock = tokio::net::TcpStream::connect(node.http).await.unwrap();
    let head = format!(
        "POST /api/uploads/direct HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n",
        200u64 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut sock, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(
        support::WAIT,
        tokio::io::AsyncReadExt::read_exact(&mut sock, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // Nothing was kept.
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ch}/uploads"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.body["uploads"].as_array().unwrap().len(), 0);
    // A text file is fine, and served as an attachment-safe type.
    let r = direct(
        &rest,
        &alice,
        &ch,
        b"hello, world\n",
        "notes.txt",
        "text/plain",
    )
    .await;
    assert_eq!(
        (r.status, text(&r.body, "contentType")),
        (201, "text/plain".into())
    );
    node.stop().await;
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
