//! Records read from disk or replicated: the storage framing (version, CRC, bincode) and the
//! chat layer's records and commands.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_storage::fuzzing::record(data);
    chatsdk_actors::fuzzing::chat_record(data);
});
