//! What the fuzz targets share: an allocator that aborts on any single allocation larger than
//! a target's bound, so an input that makes a decoder allocate what a length prefix claims is
//! a finding (libFuzzer saves it), not a machine out of memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The system allocator, refusing (by aborting) any allocation over `MAX` bytes.
pub struct Capped<const MAX: usize>;

impl<const MAX: usize> Capped<MAX> {
    fn check(size: usize) {
        if size > MAX {
            // No allocation on this path: the message is static and stderr is unbuffered.
            let _ = std::io::stderr().write_all(b"chatsdk-fuzz: an allocation over the bound\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the check only aborts before an allocation is made.
unsafe impl<const MAX: usize> GlobalAlloc for Capped<MAX> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The bound of the decoders of bytes from peers, disks and clients: the largest length any of
/// them accepts (the cluster's 64 MiB frames), with room.
pub const DECODER_BOUND: usize = 128 << 20;

/// The bound of the image target: the decoder's own allocation limit (256 MiB), with room.
pub const IMAGE_BOUND: usize = 512 << 20;
