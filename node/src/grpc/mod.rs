//! The gRPC surface of a node: the public `Admission` service, the operators' `Cluster`
//! service, the internal `Raft` transport, health and reflection.

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod connections;
pub mod convert;
pub mod limits;
pub mod metered;
pub mod peer;
pub mod raft;
pub mod status;

/// Largest message a client may send or receive (a full `SubmitBatch` or a page of investments).
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest request an operator may send (membership lists, a saga's id and reason): far below
/// the client limit, so that the `Cluster` service cannot be made to buffer large bodies.
pub const CLUSTER_REQUEST_BYTES_MAX: usize = 64 * 1024;
