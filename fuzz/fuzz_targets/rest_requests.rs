//! REST request bodies and the access tokens clients present.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_gateway::fuzzing::rest_body(data);
    chatsdk_gateway::fuzzing::access_token(data);
});
