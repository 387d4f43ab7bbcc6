//! The gRPC contract of the admission ledger (package `admission.v1`).
//!
//! Not built yet: the `.proto` files and the generated tonic/prost code land with the
//! replicated-node issue (#3). Until then this crate is an empty placeholder so the workspace
//! layout of `DESIGN.md` §3 is in place.
