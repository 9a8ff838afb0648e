//! The session pipeline, one module per service; `src/bin/` holds their thin mains.
//!
//! Where the Python templates were wrong, this differs (and says so where it does):
//! - service calls carry a signed, 60-second token, never `JWT_SECRET_KEY` itself;
//! - a chunk is acknowledged only once it is on disk under its own hash (temp file, fsync,
//!   rename, fsync of the directory), so a crash never leaves a chunk that fails its hash;
//! - a session's chunk list changes only when a whole upload succeeded: a truncated body
//!   adds nothing to the session.

pub mod address;
pub mod chunk_store;
pub mod error;
pub mod gateway;
pub mod merkle;
pub mod recorder;
pub mod storage;
