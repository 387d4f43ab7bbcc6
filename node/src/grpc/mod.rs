//! The gRPC surface of a node: the public `Admission` service, the operators' `Cluster`
//! service, the internal `Raft` transport, health and reflection.

pub mod admission;
pub mod cluster;
pub mod convert;
pub mod raft;
pub mod status;

/// Largest message a client may send or receive (a full `SubmitBatch` or a page of investments).
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
