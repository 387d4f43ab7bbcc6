//! Fault injection: the [`FaultConfig`] knobs, their validation, and the
//! per-request dice rolls ([`Plan`]) that decide which fault, if any, a
//! request suffers.
//!
//! Every decision for a request is rolled up front, under one short lock, so
//! that a seeded run is reproducible for a given request order and the lock is
//! never held while the request sleeps.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest accepted latency mean or jitter, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 60_000;
/// Largest accepted `unknown_delay_ms`.
pub const MAX_UNKNOWN_DELAY_MS: u64 = 120_000;

/// One of the three simulated partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// `/v1/payments...`
    Payment,
    /// `/v1/documents`
    Documents,
    /// `/v1/emails`
    Email,
}

impl Service {
    /// Name used in configs, flags and messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Payment => "payment",
            Service::Documents => "documents",
            Service::Email => "email",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Response latency: uniform in `[mean_ms - jitter_ms, mean_ms + jitter_ms]`,
/// clamped at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Centre of the distribution, in ms (≤ 60000).
    pub mean_ms: u64,
    /// Half-width of the distribution, in ms (≤ 60000).
    pub jitter_ms: u64,
}

impl Latency {
    /// A fixed-width latency distribution.
    pub const fn new(mean_ms: u64, jitter_ms: u64) -> Self {
        Self { mean_ms, jitter_ms }
    }

    /// No latency at all (handy in tests).
    pub const ZERO: Latency = Latency::new(0, 0);

    fn sample(self, rng: &mut StdRng) -> Duration {
        let low = self.mean_ms.saturating_sub(self.jitter_ms);
        let high = self.mean_ms + self.jitter_ms;
        Duration::from_millis(if low == high {
            low
        } else {
            rng.random_range(low..=high)
        })
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Knobs of one service. Rates are probabilities in `0..=1`.
///
/// Per request, in this order: latency is slept; `outage` answers 503;
/// `error_rate` answers 503 (nothing applied in either case); the effect is
/// applied; then at most one post-effect fault is picked, checking
/// `unknown_rate`, `malformed_json_rate`, `unexpected_status_rate`,
/// `truncated_body_rate` in that order, each with its own independent roll.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceFaults {
    /// Response latency distribution.
    pub latency: Latency,
    /// Every request answers 503, nothing applied.
    pub outage: bool,
    /// Chance of a 503 with nothing applied.
    pub error_rate: f64,
    /// Chance of an unknown outcome: applied, then the reply is delayed by
    /// `unknown_delay_ms` or the connection dropped (see [`UnknownMode`]).
    pub unknown_rate: f64,
    /// Chance of an invalid JSON reply body (applied).
    pub malformed_json_rate: f64,
    /// Chance of an unexpected status code (`unexpected_status`, applied).
    pub unexpected_status_rate: f64,
    /// Chance of a body cut mid-way with the connection aborted (applied).
    pub truncated_body_rate: f64,
}

impl ServiceFaults {
    /// No faults, the given latency.
    pub fn with_latency(latency: Latency) -> Self {
        Self {
            latency,
            outage: false,
            error_rate: 0.0,
            unknown_rate: 0.0,
            malformed_json_rate: 0.0,
            unexpected_status_rate: 0.0,
            truncated_body_rate: 0.0,
        }
    }

    fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("error_rate", self.error_rate),
            ("unknown_rate", self.unknown_rate),
            ("malformed_json_rate", self.malformed_json_rate),
            ("unexpected_status_rate", self.unexpected_status_rate),
            ("truncated_body_rate", self.truncated_body_rate),
        ]
    }
}

impl Default for ServiceFaults {
    fn default() -> Self {
        Self::with_latency(Latency::ZERO)
    }
}

/// What an unknown outcome looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMode {
    /// The reply is held for `unknown_delay_ms`, so the caller times out.
    Delay,
    /// The response head is sent, then the connection is aborted.
    Drop,
    /// Delay or drop, 50/50.
    #[default]
    Mixed,
}

/// All fault knobs. Over HTTP, absent JSON fields take the
/// [`FaultConfig::default`] values (see [`FaultConfig::from_json`]); unknown
/// fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Payment service knobs (default latency 150 ± 50 ms).
    pub payment: ServiceFaults,
    /// Documents service knobs (default latency 100 ± 30 ms).
    pub documents: ServiceFaults,
    /// Email service knobs (default latency 50 ± 20 ms).
    pub email: ServiceFaults,
    /// Chance that a NEW charge is declined (replays keep their first result).
    pub decline_rate: f64,
    /// How long an unknown-outcome reply is held (≤ 120000 ms).
    pub unknown_delay_ms: u64,
    /// Delay, drop, or a mix.
    pub unknown_mode: UnknownMode,
    /// Status sent by `unexpected_status_rate` (300..=599; default 418).
    pub unexpected_status: u16,
    /// Seed for the fault dice and generated ids; `None` = OS entropy.
    pub seed: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            payment: ServiceFaults::with_latency(Latency::new(150, 50)),
            documents: ServiceFaults::with_latency(Latency::new(100, 30)),
            email: ServiceFaults::with_latency(Latency::new(50, 20)),
            decline_rate: 0.0,
            unknown_delay_ms: 30_000,
            unknown_mode: UnknownMode::Mixed,
            unexpected_status: 418,
            seed: None,
        }
    }
}

/// A fault config that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault config: {0}")]
pub struct FaultConfigError(pub String);

impl FaultConfig {
    /// No faults and no latency anywhere: the base for tests.
    pub fn quiet() -> Self {
        Self {
            payment: ServiceFaults::default(),
            documents: ServiceFaults::default(),
            email: ServiceFaults::default(),
            ..Self::default()
        }
    }

    /// The knobs of one service.
    pub fn service(&self, service: Service) -> &ServiceFaults {
        match service {
            Service::Payment => &self.payment,
            Service::Documents => &self.documents,
            Service::Email => &self.email,
        }
    }

    /// The knobs of one service, mutably.
    pub fn service_mut(&mut self, service: Service) -> &mut ServiceFaults {
        match service {
            Service::Payment => &mut self.payment,
            Service::Documents => &mut self.documents,
            Service::Email => &mut self.email,
        }
    }

    /// Checks every bound; the error names the first offending field.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        check_rate("decline_rate", self.decline_rate)?;
        if self.unknown_delay_ms > MAX_UNKNOWN_DELAY_MS {
            return Err(FaultConfigError(format!(
                "unknown_delay_ms must be <= {MAX_UNKNOWN_DELAY_MS}, got {}",
                self.unknown_delay_ms
            )));
        }
        if !(300..=599).contains(&self.unexpected_status) {
            return Err(FaultConfigError(format!(
                "unexpected_status must be within 300..=599, got {}",
                self.unexpected_status
            )));
        }
        for service in [Service::Payment, Service::Documents, Service::Email] {
            let knobs = self.service(service);
            for (name, value) in [
                ("latency.mean_ms", knobs.latency.mean_ms),
                ("latency.jitter_ms", knobs.latency.jitter_ms),
            ] {
                if value > MAX_LATENCY_MS {
                    return Err(FaultConfigError(format!(
                        "{service}.{name} must be <= {MAX_LATENCY_MS}, got {value}"
                    )));
                }
            }
            for (name, value) in knobs.rates() {
                check_rate(&format!("{service}.{name}"), value)?;
            }
        }
        Ok(())
    }

    /// Parses a full config from JSON and validates it. Absent fields, at
    /// any depth, take their [`FaultConfig::default`] values (so
    /// `{"payment": {"error_rate": 0.1}}` keeps the payment default latency).
    pub fn from_json(value: Value) -> Result<Self, FaultConfigError> {
        Self::default().patched(value)
    }

    /// Applies a JSON merge patch (RFC 7396) to this config: fields present
    /// in `patch` replace the current ones, `null` resets a field to its
    /// default, absent fields are kept. The result is validated.
    pub fn patched(&self, patch: Value) -> Result<Self, FaultConfigError> {
        if !patch.is_object() {
            return Err(FaultConfigError(
                "a fault patch must be a JSON object".into(),
            ));
        }
        let mut current =
            serde_json::to_value(self).map_err(|e| FaultConfigError(e.to_string()))?;
        merge_patch(&mut current, patch);
        let config: FaultConfig =
            serde_json::from_value(current).map_err(|e| FaultConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

fn check_rate(name: &str, value: f64) -> Result<(), FaultConfigError> {
    // `contains` is false for NaN too.
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FaultConfigError(format!(
            "{name} must be within 0..=1, got {value}"
        )))
    }
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(map) = target {
                for (key, value) in fields {
                    if value.is_null() {
                        map.remove(&key);
                    } else {
                        merge_patch(map.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other,
    }
}

/// What happens to a reply after the effect was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFault {
    /// Hold the reply this long (unknown outcome).
    Delay(Duration),
    /// Send the head, then abort the connection (unknown outcome).
    Drop,
    /// Replace the body with invalid JSON.
    MalformedJson,
    /// Replace the status with this code.
    UnexpectedStatus(u16),
    /// Send half the body, then abort the connection.
    TruncatedBody,
}

/// The dice rolled for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Sleep before doing anything.
    pub latency: Duration,
    /// The service is down: 503, nothing applied.
    pub outage: bool,
    /// Transient 503, nothing applied.
    pub error: bool,
    /// A new charge would be declined.
    pub decline: bool,
    /// Id for a record created by this request.
    pub new_id: uuid::Uuid,
    /// Fault applied to the reply after the effect.
    pub post: Option<PostFault>,
}

/// The live config plus the random source it drives.
#[derive(Debug)]
pub struct FaultState {
    config: FaultConfig,
    rng: StdRng,
}

impl FaultState {
    /// Validates `config` and seeds the dice from `config.seed`.
    pub fn new(config: FaultConfig) -> Result<Self, FaultConfigError> {
        config.validate()?;
        let rng = rng_for(config.seed);
        Ok(Self { config, rng })
    }

    /// The live config.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Replaces the config. The dice are reseeded only when `reseed` is
    /// true, so patching a rate mid-run keeps a seeded sequence going.
    pub fn replace(&mut self, config: FaultConfig, reseed: bool) -> Result<(), FaultConfigError> {
        config.validate()?;
        if reseed {
            self.rng = rng_for(config.seed);
        }
        self.config = config;
        Ok(())
    }

    /// Rolls every decision for one request to `service`.
    pub fn plan(&mut self, service: Service, is_charge: bool) -> Plan {
        let knobs = *self.config.service(service);
        let rng = &mut self.rng;
        let latency = knobs.latency.sample(rng);
        let error = roll(rng, knobs.error_rate);
        let decline = is_charge && roll(rng, self.config.decline_rate);
        let new_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let post = if roll(rng, knobs.unknown_rate) {
            let delay = match self.config.unknown_mode {
                UnknownMode::Delay => true,
                UnknownMode::Drop => false,
                UnknownMode::Mixed => rng.random_bool(0.5),
            };
            Some(if delay {
                PostFault::Delay(Duration::from_millis(self.config.unknown_delay_ms))
            } else {
                PostFault::Drop
            })
        } else if roll(rng, knobs.malformed_json_rate) {
            Some(PostFault::MalformedJson)
        } else if roll(rng, knobs.unexpected_status_rate) {
            Some(PostFault::UnexpectedStatus(self.config.unexpected_status))
        } else if roll(rng, knobs.truncated_body_rate) {
            Some(PostFault::TruncatedBody)
        } else {
            None
        };
        Plan {
            latency,
            outage: knobs.outage,
            error,
            decline,
            new_id,
            post,
        }
    }
}

fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// Always consumes one draw, so a rate of 0 or 1 does not shift the rest of a
/// seeded sequence.
fn roll(rng: &mut StdRng, rate: f64) -> bool {
    let draw: f64 = rng.random();
    draw < rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_valid_and_match_the_brief() {
        let config = FaultConfig::default();
        config.validate().unwrap();
        assert_eq!(config.payment.latency.mean_ms, 150);
        assert_eq!(config.documents.latency.mean_ms, 100);
        assert_eq!(config.email.latency.mean_ms, 50);
        assert_eq!(config.unknown_delay_ms, 30_000);
        FaultConfig::quiet().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_are_rejected_with_the_field_name() {
        let mut c = FaultConfig::quiet();
        c.payment.error_rate = 1.5;
        assert!(c.validate().unwrap_err().0.contains("payment.error_rate"));

        let mut c = FaultConfig::quiet();
        c.email.truncated_body_rate = f64::NAN;
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("email.truncated_body_rate"));

        let mut c = FaultConfig::quiet();
        c.decline_rate = -0.1;
        assert!(c.validate().unwrap_err().0.contains("decline_rate"));

        let mut c = FaultConfig::quiet();
        c.documents.latency.mean_ms = MAX_LATENCY_MS + 1;
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("documents.latency.mean_ms"));

        let mut c = FaultConfig::quiet();
        c.unknown_delay_ms = MAX_UNKNOWN_DELAY_MS + 1;
        assert!(c.validate().unwrap_err().0.contains("unknown_delay_ms"));

        let mut c = FaultConfig::quiet();
        c.unexpected_status = 200;
        assert!(c.validate().unwrap_err().0.contains("unexpected_status"));

        assert!(FaultState::new(c).is_err());
    }

    #[test]
    fn merge_patch_keeps_absent_fields_and_resets_nulls() {
        let mut base = FaultConfig::quiet();
        base.seed = Some(7);
        base.email.latency = Latency::new(3, 1);
        let patched = base
            .patched(json!({"payment": {"error_rate": 0.25}, "seed": null}))
            .unwrap();
        assert_eq!(patched.payment.error_rate, 0.25);
        assert_eq!(patched.email.latency, Latency::new(3, 1));
        assert_eq!(patched.seed, None);

        assert!(base.patched(json!({"payment": {"eror_rate": 1}})).is_err());
        assert!(base.patched(json!({"payment": {"error_rate": 2}})).is_err());
        assert!(base.patched(json!({"decline_rate": "high"})).is_err());
        assert!(base.patched(json!([1, 2])).is_err());
    }

    #[test]
    fn full_json_fills_defaults() {
        let c = FaultConfig::from_json(json!({"decline_rate": 1.0})).unwrap();
        assert_eq!(c.decline_rate, 1.0);
        assert_eq!(c.payment.latency, Latency::new(150, 50));
        let c = FaultConfig::from_json(json!({"email": {"latency": {"jitter_ms": 1}}})).unwrap();
        assert_eq!(c.email.latency, Latency::new(50, 1));
        assert_eq!(c.decline_rate, 0.0);
    }

    #[test]
    fn seeded_plans_are_reproducible() {
        let mut config = FaultConfig::quiet();
        config.seed = Some(42);
        config.decline_rate = 0.5;
        config.payment.latency = Latency::new(10, 10);
        config.payment.unknown_rate = 0.3;
        let plans = |config: &FaultConfig| {
            let mut state = FaultState::new(config.clone()).unwrap();
            (0..50)
                .map(|_| state.plan(Service::Payment, true))
                .collect::<Vec<_>>()
        };
        let a = plans(&config);
        assert_eq!(a, plans(&config));
        assert!(a.iter().any(|p| p.decline) && a.iter().any(|p| !p.decline));
        assert!(a.iter().all(|p| p.latency <= Duration::from_millis(20)));
        config.seed = Some(43);
        assert_ne!(a, plans(&config));
    }

    #[test]
    fn certain_rates_always_fire_in_priority_order() {
        let mut config = FaultConfig::quiet();
        config.email.malformed_json_rate = 1.0;
        config.email.truncated_body_rate = 1.0;
        let mut state = FaultState::new(config).unwrap();
        for _ in 0..20 {
            let plan = state.plan(Service::Email, false);
            assert_eq!(plan.post, Some(PostFault::MalformedJson));
            assert!(!plan.decline && !plan.error && !plan.outage);
            assert_eq!(state.plan(Service::Payment, true).post, None);
        }
    }
}
