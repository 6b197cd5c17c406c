//! The durable journal (docs/durability.md): every event with its seq on disk,
//! the latest value per key for start-up, and the seq reservation that keeps
//! seqs unique across power cuts.
//!
//! `store` is the sled storage layer (blocking, one owner); `writer` is the
//! thread that owns the store, group-commits and answers reads; `export`
//! writes records as JSON lines; `space` decides whether the disk has room
//! for the retention limits; `keys` remembers the idempotency keys of
//! publishes; `forward` keeps the durable outboxes of `[[forward]]` in the
//! same database. Nothing here touches a socket.

pub(crate) mod export;
pub mod forward;
pub(crate) mod keys;
pub(crate) mod space;
pub mod store;
pub(crate) mod writer;

pub use writer::{LEASE_MIN, REPLAY_PAGE, RESERVE_BLOCK, RETRY_INTERVAL, TRIM_BATCH};
