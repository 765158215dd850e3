//! Entry points for fuzzing the chat layer's decoders, shared by the `fuzz_` property tests and
//! the coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz`). Each takes bytes from outside
//! the process: stored and replicated records, another node's fanout batches, uploaded images
//! and fetched web pages. The verdict is ignored; a panic, a hang or an outsized allocation is
//! the finding.

use crate::model::{Channel, Event, Message, User};
use crate::{codec, directory, emitter, media, previews};

/// Stored records and replicated commands, as read and behind a valid format byte.
pub fn chat_record(data: &[u8]) {
    let mut tagged = Vec::with_capacity(data.len() + 1);
    tagged.push(codec::FORMAT);
    tagged.extend_from_slice(data);
    for input in [data, &tagged[..]] {
        let _ = codec::decode::<Message>(input);
        let _ = codec::decode::<Channel>(input);
        let _ = codec::decode::<User>(input);
        let _ = codec::decode::<Event>(input);
        let _ = codec::decode::<directory::DirCommand>(input);
    }
}

/// A batch of deliveries from another node's emitter.
pub fn fanout_batch(data: &[u8]) {
    if let Some((_, deliveries)) = emitter::decode_batch(data) {
        let framed: usize = deliveries.iter().map(|d| d.frame.len()).sum();
        assert!(framed <= data.len(), "deliveries claim more than arrived");
    }
}

/// The content types an upload may be sniffed as; the input's first byte picks one.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An upload, sniffed, then decoded as an image of the type the first byte picks (whatever
/// the sniffing said, to reach each decoder with any bytes), resized and encoded as a
/// thumbnail with its blurhash.
pub fn upload(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let declared = IMAGE_TYPES[usize::from(pick) % IMAGE_TYPES.len()];
    let _ = media::sniff::sniff(bytes, declared);
    let _ = media::process::process(bytes, declared);
}

/// A fetched page, read for its preview, and a message's text, searched for links.
pub fn preview_page(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = previews::from_html("https://example.com/a/b", &text, None);
    for url in previews::find_urls(&text) {
        let _ = previews::known(&url);
    }
}
