//! What another node sends: the cluster wire format (frame headers, responses, hellos, peer
//! requests and responses, join requests, meta commands) and fanout batches.
#![no_main]

#[global_allocator]
static ALLOC: chatsdk_fuzz::Capped<{ chatsdk_fuzz::DECODER_BOUND }> = chatsdk_fuzz::Capped;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chatsdk_cluster::fuzzing::wire(data);
    chatsdk_actors::fuzzing::fanout_batch(data);
});
