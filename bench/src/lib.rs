//! ChatSDK's load harness as a library: the binary (`main.rs`) parses the command line and
//! calls [`scenarios`]. See `docs/benchmarks.md` for the method and the results.
//!
//! Module map: [`scenarios`] (idle, storm, fanout, chat-mix, durable, failover), [`sut`] (the
//! system under test: our node processes or a peer), [`ournode`] and [`peers`] (starting
//! them), [`jetstream`] (nats-server with JetStream, the durable peer, and its client),
//! [`setup`] (users and channels over REST), [`gen`] and [`genproc`] (generator processes and
//! their handles), [`adapters`] (every system's wire protocol), [`procstat`] (`/proc` readings
//! and pinning), [`floor`] (what a loopback write, sled and the bare transports cost), [`hist`], [`report`],
//! [`progress`].

pub mod adapters;
pub mod floor;
pub mod gen;
pub mod genproc;
pub mod hist;
pub mod jetstream;
pub mod ournode;
pub mod peers;
pub mod procstat;
pub mod progress;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod sut;
