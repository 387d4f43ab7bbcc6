//! The gRPC contract of the admission ledger (protobuf package `admission.v1`) and the code
//! generated from it by prost and tonic.
//!
//! Three services, all in [`admission::v1`]:
//!
//! - **`Admission`** (clients): create, close and read deals; submit investment requests alone or
//!   in batches (idempotent by `request_id`); read, watch and list investments; read a user.
//!   Client: [`AdmissionClient`]; server: implement [`Admission`] and serve [`AdmissionServer`].
//! - **`Cluster`** (operators): status, initialization, learners, membership changes, leader
//!   transfer, snapshots, listing and compensating sagas. Client: [`ClusterClient`]; server:
//!   [`Cluster`] / [`ClusterServer`].
//! - **`Raft`** (internal, node to node): openraft's `AppendEntries`, `Vote` and
//!   `InstallSnapshot`, each carrying opaque bincode bytes produced by the node. Client:
//!   [`RaftClient`]; server: [`Raft`] / [`RaftServer`].
//!
//! Wire conventions (see the `.proto` files under `proto/admission/v1/` for every field):
//! money is a decimal string with at most two fraction digits (`"1000.00"`); times are Unix
//! milliseconds in log time (stamped by the leader, identical on every replica); reads take a
//! [`Consistency`], `LINEARIZABLE` by default.
//!
//! [`FILE_DESCRIPTOR_SET`] holds the encoded `google.protobuf.FileDescriptorSet` of the three
//! files, for serving gRPC reflection (`tonic-reflection`) from the node.

pub mod identity;

/// The protobuf packages of the contract.
pub mod admission {
    /// Package `admission.v1`: every message, enum, client and server of the contract.
    pub mod v1 {
        #![allow(missing_docs)]
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("admission.v1");
    }
}

/// The encoded `google.protobuf.FileDescriptorSet` of `admission.v1` (admission, cluster and raft
/// protos), for `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/admission_v1_descriptor.bin"));

/// Fully qualified service names, as used in gRPC paths, reflection and health checks.
pub mod service_names {
    /// `admission.v1.Admission`.
    pub const ADMISSION: &str = "admission.v1.Admission";
    /// `admission.v1.Cluster`.
    pub const CLUSTER: &str = "admission.v1.Cluster";
    /// `admission.v1.Raft`.
    pub const RAFT: &str = "admission.v1.Raft";
}

/// Short alias for the generated package: `ledger_proto::pb::Deal`, `pb::SubmitRequest`, …
pub use admission::v1 as pb;

pub use admission::v1::admission_client::AdmissionClient;
pub use admission::v1::admission_server::{Admission, AdmissionServer};
pub use admission::v1::cluster_client::ClusterClient;
pub use admission::v1::cluster_server::{Cluster, ClusterServer};
pub use admission::v1::raft_client::RaftClient;
pub use admission::v1::raft_server::{Raft, RaftServer};
pub use admission::v1::{
    CancelCause, Consistency, DealStatus, InvestmentStatus, MemberRole, RejectReason, SagaStep,
    WriteOutcome,
};

/// A gRPC status code's canonical name (`FAILED_PRECONDITION`), as metrics and reports show it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
