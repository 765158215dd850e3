//! Uploaded images: sniffed, decoded, resized and encoded as thumbnails.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::IMAGE_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_actors::fuzzing::upload(data);
});
