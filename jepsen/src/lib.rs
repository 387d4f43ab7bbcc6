//! `ledger-jepsen`: a Jepsen-style test of the admission ledger on real processes.
//!
//! Real `ledger-node` processes run in network namespaces of their own on a bridge the harness
//! creates (addresses from 198.18.0.0/15), the partner simulator in another; clients in the root
//! namespace load the cluster and record every operation while a nemesis partitions, kills,
//! pauses, starves, skews clocks, changes the membership, slows disks and breaks the partners on
//! a seeded schedule. After healing, the checker decides I1–I9 from the history, every node's
//! final state, the digests seen and the partners' audit.
//!
//! - [`history`]: the recorded operations and final reads, the checker's input;
//! - [`check`]: the checker, which turns a [`history::CheckInput`] into verdicts on I1–I9;
//! - [`synth`]: valid synthetic runs made with a real state machine, to test and time the
//!   checker without a cluster;
//! - [`net`], [`cgroup`], [`procs`], [`world`]: the network, CPU quotas, processes, the cluster;
//! - [`nemesis`]: the faults and their schedule; [`workload`]: the clients; [`observer`]: status
//!   sampling; [`report`]: statistics and the plot; [`run`]: one run from start to report.

pub mod cgroup;
pub mod check;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod observer;
pub mod procs;
pub mod report;
pub mod rng;
pub mod run;
pub mod summary;
pub mod synth;
pub mod workload;
pub mod world;
