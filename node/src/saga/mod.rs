//! The saga executor: performs the partner calls of the sagas this node's replica assigns to it,
//! and proposes each result back into the log (`DESIGN.md` §4.4).
//!
//! [`driver`] decides each worker's next action without I/O; [`executor`] performs them;
//! [`api`] is the seam to the partners, reached over HTTP by [`partners`] (or, with the `sim`
//! feature, in-process over the partners' own books by `sim`).

pub mod api;
pub mod driver;
pub mod executor;
pub mod partners;
#[cfg(feature = "sim")]
pub mod sim;
