//! The realtime QUIC stream's framing (varint lengths), arriving in chunks.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_proto::fuzzing::quic_stream(data);
});
