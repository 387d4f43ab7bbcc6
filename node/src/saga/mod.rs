//! The saga executor: performs the partner calls of the sagas this node's replica assigns to it,
//! and proposes each result back into the log (`DESIGN.md` §4.4).

pub mod executor;
pub mod partners;
