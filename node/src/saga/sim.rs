//! The partners in-process, for simulations (feature `sim`): [`SimPartners`] answers the
//! executor from the `ledger-partners` books and fault knobs, without sockets.
//!
//! Each call goes the way an HTTP call goes, minus the network: the same JSON body as
//! [`super::partners::HttpPartners`] sends, the partners' own fault plan and reply
//! ([`ledger_partners::Partners::answer`], which their HTTP routes serve too), and the same
//! [`classify`] of the reply into an answer or a [`CallError`]. A reply cut short is an unknown
//! outcome, as a broken connection is; a reply held past the call timeout too.
//!
//! Time passes only through the [`Sleep`] hook (by default `tokio::time::sleep`, so a paused or
//! simulated tokio clock drives it): the partners' latency, a held reply's delay, the call
//! timeout. The fault dice and generated ids come from the seed given to [`SimPartners::new`];
//! with the calls made in the same order, a seed gives the same answers, ids and audit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, BoxFuture, Either};
use ledger_partners::{Delivery, FaultConfig, FaultConfigError, Partners};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::api::CallError;
use super::partners::{classify, Carrier, Request};

/// How the simulated partners wait: given a duration, a future that completes after it.
pub type Sleep = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// The partners' books and fault knobs, called in-process.
#[derive(Clone)]
pub struct SimPartners {
    partners: Partners,
    call_timeout: Duration,
    sleep: Sleep,
}

impl SimPartners {
    /// Empty books under `faults`, with the dice and ids drawn from `seed` (whatever
    /// `faults.seed` says), each call given up after `call_timeout` as the HTTP client does.
    pub fn new(
        faults: FaultConfig,
        seed: u64,
        call_timeout: Duration,
    ) -> Result<SimPartners, FaultConfigError> {
        let partners = Partners::new(FaultConfig {
            seed: Some(seed),
            ..faults
        })?;
        Ok(SimPartners {
            partners,
            call_timeout,
            sleep: Arc::new(|duration| Box::pin(tokio::time::sleep(duration))),
        })
    }

    /// Waits through `sleep` instead of `tokio::time::sleep`.
    pub fn with_sleep(self, sleep: Sleep) -> SimPartners {
        SimPartners { sleep, ..self }
    }

    /// The books and fault knobs: the audit to check, the faults to change (through
    /// `patch_faults`, which keeps the seeded dice going unless the patch names a seed).
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// One call, the way HTTP would carry it, bounded by the call timeout.
    async fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T, CallError> {
        let timeout = (self.sleep)(self.call_timeout);
        match future::select(Box::pin(self.exchange(&request)), timeout).await {
            Either::Left((reply, _)) => reply,
            Either::Right(((), _)) => Err(CallError::Unknown(format!(
                "no reply within {:?}",
                self.call_timeout
            ))),
        }
    }

    async fn exchange<T: DeserializeOwned>(&self, request: &Request) -> Result<T, CallError> {
        let body = match request.body() {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| CallError::Permanent(format!("request not encoded: {e}")))?,
            None => Vec::new(),
        };
        let request = match request {
            Request::Charge(_) => ledger_partners::Request::Charge(&body),
            Request::Void(key) => ledger_partners::Request::Void(key),
            Request::Documents(_) => ledger_partners::Request::Document(&body),
            Request::Email(_) => ledger_partners::Request::Email(&body),
        };
        let plan = self.partners.plan(request.service(), request.is_charge());
        self.wait(plan.latency).await;
        let wire = self.partners.answer(request, &plan);
        let status = StatusCode::from_u16(wire.status)
            .map_err(|e| CallError::Unknown(format!("status {}: {e}", wire.status)))?;
        match wire.delivery {
            Delivery::Now => {}
            Delivery::After(delay) => self.wait(delay).await,
            Delivery::CutAfter(_) => {
                return Err(CallError::Unknown(format!(
                    "{status}: body cut short: connection aborted"
                )))
            }
        }
        classify(status, &wire.body, request.is_charge())
    }

    fn wait(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        let sleep = (!duration.is_zero()).then(|| (self.sleep)(duration));
        async move {
            if let Some(sleep) = sleep {
                sleep.await;
            }
        }
    }
}

impl Carrier for SimPartners {
    fn send<T: DeserializeOwned>(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<T, CallError>> + Send {
        self.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ledger_partners::{Latency, SpawnedPartners, UnknownMode};
    use ledger_state_machine::Money;

    use super::*;
    use crate::saga::api::{Call, Reply};
    use crate::saga::partners::{HttpPartners, PartnerHttp};

    const SEED: u64 = 0x51a7;

    /// What the executor can tell apart.
    #[derive(Clone, Debug, PartialEq)]
    enum Seen {
        Answer(Reply),
        Voided,
        Permanent(String),
        /// The text says how the reply was lost, which differs between a socket and none.
        Unknown,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Class {
        Answer,
        Voided,
        Permanent,
        Unknown,
    }

    impl Seen {
        fn class(&self) -> Class {
            match self {
                Seen::Answer(_) => Class::Answer,
                Seen::Voided => Class::Voided,
                Seen::Permanent(_) => Class::Permanent,
                Seen::Unknown => Class::Unknown,
            }
        }
    }

    fn seen(result: Result<Reply, CallError>) -> Seen {
        match result {
            Ok(reply) => Seen::Answer(reply),
            Err(CallError::Voided) => Seen::Voided,
            Err(CallError::Permanent(text)) => Seen::Permanent(text),
            Err(CallError::Unknown(_)) => Seen::Unknown,
        }
    }

    fn money(text: &str) -> Money {
        text.parse().unwrap()
    }

    fn charge(key: &str, user_id: &str, amount: &str) -> Call {
        Call::Charge {
            key: key.into(),
            user_id: user_id.into(),
            amount: money(amount),
        }
    }

    fn documents(key: &str) -> Call {
        Call::Documents {
            key: key.into(),
            request_id: "r".into(),
            deal_id: "d".into(),
            user_id: "u".into(),
            amount: money("10.00"),
        }
    }

    fn void(key: &str) -> Call {
        Call::Void { key: key.into() }
    }

    fn email(key: &str) -> Call {
        Call::Email {
            key: key.into(),
            to: "u@investors.invalid".into(),
            subject: "s".into(),
            body: "b".into(),
        }
    }

    /// Makes `calls` in order at the HTTP partners and at the in-process ones, both under
    /// `faults` with the same seed; asserts each pair of outcomes equal (and of the `expected`
    /// class), and the two audits equal.
    async fn same_outcomes(
        version: PartnerHttp,
        name: &str,
        faults: FaultConfig,
        timeout: Duration,
        calls: &[(Call, Class)],
    ) {
        let name = &format!("{version:?}: {name}");
        let server = SpawnedPartners::start(FaultConfig {
            seed: Some(SEED),
            ..faults.clone()
        })
        .await
        .unwrap();
        let http = HttpPartners::new(&server.base_url(), timeout, None, version).unwrap();
        let sim = SimPartners::new(faults, SEED, timeout).unwrap();
        for (call, expected) in calls {
            let over_http = seen(call.perform(&http).await);
            let in_process = seen(call.perform(&sim).await);
            assert_eq!(over_http, in_process, "{name}: {call:?}");
            assert_eq!(
                in_process.class(),
                *expected,
                "{name}: {call:?}: {in_process:?}"
            );
        }
        // A held reply's effect may land after the caller gave up: wait for the audits to match.
        let events = sim.partners().audit().events.len();
        assert!(
            server
                .partners()
                .wait_for_audit_len(events, Duration::from_secs(10))
                .await
        );
        assert_eq!(server.partners().audit(), sim.partners().audit(), "{name}");
        server.shutdown().await.unwrap();
    }

    fn faults(change: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
        let mut faults = FaultConfig::quiet();
        change(&mut faults);
        faults
    }

    #[tokio::test]
    async fn every_answer_and_fault_maps_to_the_same_call_error_as_over_http1() {
        every_answer_and_fault_maps_as_over_http(PartnerHttp::Http1).await;
    }

    /// The same over HTTP/2, where a dropped or truncated reply resets one stream of a shared
    /// connection instead of the connection.
    #[tokio::test]
    async fn every_answer_and_fault_maps_to_the_same_call_error_as_over_http2() {
        every_answer_and_fault_maps_as_over_http(PartnerHttp::Http2).await;
    }

    async fn every_answer_and_fault_maps_as_over_http(version: PartnerHttp) {
        use Class::*;
        let timeout = Duration::from_secs(2);
        let quiet = FaultConfig::quiet();
        same_outcomes(
            version,
            "answers",
            quiet.clone(),
            timeout,
            &[
                (charge("k:payment", "u", "10.00"), Answer),
                (documents("k:documents"), Answer),
                (email("k:notify"), Answer),
                (void("k:payment"), Answer),
                (void("k:payment"), Answer),
                (charge("k:payment", "u", "10.00"), Answer),
            ],
        )
        .await;
        same_outcomes(
            version,
            "decline",
            faults(|f| f.decline_rate = 1.0),
            timeout,
            &[(charge("k", "u", "10.00"), Answer), (void("k"), Answer)],
        )
        .await;
        same_outcomes(
            version,
            "voided key",
            quiet.clone(),
            timeout,
            &[(void("k"), Answer), (charge("k", "u", "10.00"), Voided)],
        )
        .await;
        same_outcomes(
            version,
            "permanent refusals",
            quiet.clone(),
            timeout,
            &[
                (charge("k", "u", "10.00"), Answer),
                (charge("k", "u", "11.00"), Permanent),
                (charge("k2", "", "10.00"), Permanent),
                (email("m"), Answer),
                (
                    Call::Email {
                        key: "m".into(),
                        to: "other@investors.invalid".into(),
                        subject: "s".into(),
                        body: "b".into(),
                    },
                    Permanent,
                ),
            ],
        )
        .await;
        for (name, faults) in [
            ("outage", faults(|f| f.payment.outage = true)),
            ("5xx", faults(|f| f.payment.error_rate = 1.0)),
            ("malformed", faults(|f| f.payment.malformed_json_rate = 1.0)),
            ("truncated", faults(|f| f.payment.truncated_body_rate = 1.0)),
            (
                "dropped",
                faults(|f| {
                    f.payment.unknown_rate = 1.0;
                    f.unknown_mode = UnknownMode::Drop;
                }),
            ),
            (
                "unexpected 418",
                faults(|f| f.payment.unexpected_status_rate = 1.0),
            ),
            (
                "unexpected 409",
                faults(|f| {
                    f.payment.unexpected_status_rate = 1.0;
                    f.unexpected_status = 409;
                }),
            ),
        ] {
            same_outcomes(
                version,
                name,
                faults,
                timeout,
                &[(charge("k", "u", "10.00"), Unknown), (void("k"), Unknown)],
            )
            .await;
        }
        same_outcomes(
            version,
            "unexpected 422 reads as a refusal, over HTTP too",
            faults(|f| {
                f.payment.unexpected_status_rate = 1.0;
                f.unexpected_status = 422;
            }),
            timeout,
            &[(charge("k", "u", "10.00"), Permanent)],
        )
        .await;
        same_outcomes(
            version,
            "documents and e-mail faults",
            faults(|f| {
                f.documents.outage = true;
                f.email.malformed_json_rate = 1.0;
            }),
            timeout,
            &[(documents("d"), Unknown), (email("e"), Unknown)],
        )
        .await;
        let held = |delay_ms| {
            faults(move |f| {
                f.payment.unknown_rate = 1.0;
                f.unknown_mode = UnknownMode::Delay;
                f.unknown_delay_ms = delay_ms;
            })
        };
        same_outcomes(
            version,
            "held past the timeout",
            held(2_000),
            Duration::from_millis(300),
            &[(charge("k", "u", "10.00"), Unknown)],
        )
        .await;
        same_outcomes(
            version,
            "held within the timeout",
            held(20),
            Duration::from_secs(2),
            &[(charge("k", "u", "10.00"), Answer)],
        )
        .await;
    }

    /// A hook that records every wait and returns at once.
    fn recording() -> (Sleep, Arc<Mutex<Vec<Duration>>>) {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let log = waits.clone();
        let sleep: Sleep = Arc::new(move |duration| {
            log.lock().unwrap().push(duration);
            Box::pin(async {})
        });
        (sleep, waits)
    }

    #[tokio::test]
    async fn time_passes_only_through_the_hook_and_a_seed_replays_a_run() {
        let mut faults = FaultConfig::quiet();
        faults.payment.latency = Latency::new(150, 50);
        faults.decline_rate = 0.5;
        faults.payment.unknown_rate = 0.3;
        faults.unknown_mode = UnknownMode::Delay;
        faults.unknown_delay_ms = 700;
        let timeout = Duration::from_secs(2);
        let run = |seed| {
            let faults = faults.clone();
            async move {
                let (sleep, waits) = recording();
                let sim = SimPartners::new(faults, seed, timeout)
                    .unwrap()
                    .with_sleep(sleep);
                let mut outcomes = Vec::new();
                for i in 0..20 {
                    let call = charge(&format!("k{i}"), "u", "10.00");
                    outcomes.push(seen(call.perform(&sim).await));
                }
                let waits = waits.lock().unwrap().clone();
                (outcomes, waits, sim.partners().audit())
            }
        };
        let (outcomes, waits, audit) = run(1).await;
        // Each call: its timeout, the partner's latency, and for a held reply its delay.
        let latencies: Vec<_> = waits.iter().filter(|w| **w != timeout).collect();
        assert!(latencies.len() >= 20, "{waits:?}");
        assert!(latencies
            .iter()
            .all(|w| (Duration::from_millis(100)..=Duration::from_millis(700)).contains(*w)));
        assert!(waits.contains(&Duration::from_millis(700)), "{waits:?}");
        assert_eq!(waits.iter().filter(|w| **w == timeout).count(), 20);
        let declined = outcomes
            .iter()
            .filter(|o| matches!(o, Seen::Answer(Reply::Charge(c)) if c.status == "declined"))
            .count();
        assert!(0 < declined && declined < 20, "{outcomes:?}");

        assert_eq!(run(1).await, (outcomes.clone(), waits, audit.clone()));
        let (other, _, other_audit) = run(2).await;
        assert!(other != outcomes && other_audit != audit);
    }
}
