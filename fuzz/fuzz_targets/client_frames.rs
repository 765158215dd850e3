//! Centrifugo client frames (JSON), as a WebSocket message or a QUIC frame carries them.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_proto::fuzzing::client_frame(data);
});
