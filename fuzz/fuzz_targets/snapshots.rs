//! A snapshot file, as a follower installs it or a backup restores it.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_storage::fuzzing::snapshot(data);
});
