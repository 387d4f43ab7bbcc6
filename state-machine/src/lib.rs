//! The deterministic admission state machine of the admission ledger.
//!
//! Every replica of the cluster feeds the same committed log entries, in the same order, to an
//! [`AdmissionState`] and so reaches the same decisions: the log order is the first-come,
//! first-served order, and every capacity decision is made here, at apply time. The crate does no
//! I/O, reads no clock (time comes from each entry's [`EntryHeader`], stamped by the leader),
//! uses no randomness and never iterates a hash map, so replaying a log always yields the same
//! state, byte for byte ([`AdmissionState::digest`]).
//!
//! Main types:
//! - [`Entry`] of [`Command`]s: what the log carries. [`Command::validate`] is the input check
//!   the node runs before proposing, and `apply` runs again.
//! - [`AdmissionState::apply_entry`]: the only way the state changes. It returns one
//!   [`Applied`] per command (an [`Outcome`] such as a [`Decision`], or a [`CommandError`] that
//!   changed nothing) and appends [`SagaEvent`]s for the executors and watchers.
//! - [`Saga`] and [`SagaStep`]: the payment → documents → notify process of an admitted
//!   investment, its compensation (void), executor assignment with leases and epoch fencing.
//! - Queries ([`DealView`], [`InvestmentView`], [`UserView`], [`Page`]) for the API.
//! - [`codec`]: log entry and snapshot encoding, and the state digest.
//! - [`AdmissionState::check_invariants`]: invariants I1–I3 recomputed from scratch.
//!
//! ```
//! use ledger_state_machine::*;
//!
//! let mut state = AdmissionState::new();
//! let mut events = Vec::new();
//! let header = EntryHeader { leader_id: 1, time_ms: 1_700_000_000_000 };
//! let entry = Entry {
//!     header,
//!     commands: vec![
//!         Command::CreateDeal(CreateDeal {
//!             deal_id: "seed-round".into(),
//!             amount: Money::parse("100000").unwrap(),
//!             max_investors: 200,
//!             min_ticket: None,
//!             max_ticket: None,
//!             opens_at_ms: None,
//!             closes_at_ms: None,
//!             max_waitlist: MAX_WAITLIST_DEFAULT,
//!         }),
//!         Command::Submit(Submit {
//!             request_id: RequestId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
//!             deal_id: "seed-round".into(),
//!             user_id: "ana".into(),
//!             amount: Money::parse("2500.00").unwrap(),
//!             waitlist: false,
//!             waitlist_ttl_ms: None,
//!         }),
//!     ],
//! };
//! let results = state.apply_entry(1, &entry, &mut events).unwrap();
//! let Ok(Outcome::Submitted { decision, .. }) = &results[1] else { panic!() };
//! assert_eq!(decision.verdict, Verdict::Pending);
//! assert_eq!(state.deal("seed-round").unwrap().investor_count, 1);
//! // The decision is the deal's first receipt.
//! assert_eq!(state.deal("seed-round").unwrap().receipt_head.deal_seq, 1);
//! ```

#![warn(missing_docs)]

mod archive;
pub mod codec;
mod command;
mod derived;
mod error;
mod ids;
mod invariants;
mod money;
mod outcome;
mod query;
pub mod receipts;
mod saga;
mod state;
mod table;
mod trace;
mod unknown_deals;

pub use archive::ArchivedDeal;
pub use codec::StateDigest;
pub use command::{
    ArchiveDeal, Command, CreateDeal, Entry, EntryHeader, Params, RecordStep, StepResult, Submit,
    TracedSubmit, ERROR_TEXT_LEN_MAX, EXTERNAL_ID_LEN_MAX, MAX_INVESTORS_DEFAULT,
    MAX_INVESTORS_LIMIT, MAX_WAITLIST_DEFAULT, MAX_WAITLIST_LIMIT, WAITLIST_TTL_MS_MAX,
};
pub use error::{CommandError, EntryError, QueryError, SnapshotError};
pub use ids::{
    validate_deal_id, validate_user_id, IdError, NodeId, RequestId, DEAL_ID_LEN_MAX,
    USER_ID_LEN_MAX,
};
pub use invariants::InvariantViolation;
pub use money::{Money, MoneyError};
pub use outcome::{Applied, Decision, IgnoreReason, Outcome, RejectReason, Status, Verdict};
pub use query::{
    DealView, ExecutorView, InvestmentView, OpenDealLoad, Page, SagaCensus, SagaFilter, UserView,
    PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX,
};
pub use receipts::Receipt;
pub use saga::{
    CancelCause, Saga, SagaChange, SagaEvent, SagaMark, SagaStep, StepEnd, SAGA_HISTORY_MAX,
};
pub use state::{AdmissionState, Breaches, DealStatus, DealTerms, Tally, ENTRY_COMMANDS_MAX};
pub use table::set_hash_seed;
pub use trace::TraceContext;
pub use unknown_deals::UNKNOWN_DEAL_REJECTIONS_KEPT;
