//! Rate limits used by the REST handlers (the buckets themselves live in the domain crate, so
//! REST and realtime sends share one budget per user).

pub use chatsdk_actors::limits::RateLimiter;
