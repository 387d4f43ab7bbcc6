//! Hand-made histories, one file per check: a valid history that passes, and invalid ones the
//! check catches, with the offending operations named.

mod capacity;
mod idempotence;
mod liveness;
mod log_time;
mod loss;
mod money;
mod odd_input;
mod order;
mod reads;
mod render;
mod replay;
