//! Command-line flags (with `LEDGER_PARTNERS_*` environment fallbacks) and
//! their conversion into a validated [`FaultConfig`].
//!
//! Boolean env values may be true/false, 1/0, yes/no, on/off.
//! Flag defaults equal [`FaultConfig::default`]; a unit test keeps them so.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};

use crate::faults::{FaultConfig, FaultConfigError, Latency, ServiceFaults, UnknownMode};

/// Flags of the `ledger-partners` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ledger-partners",
    version,
    about = "Simulated payment, document and email partners with fault injection"
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed on stdout).
    #[arg(long, env = "LEDGER_PARTNERS_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Plaintext HTTP without any --tls-* flag.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_generate"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "tls_generate"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a throwaway CA and a server certificate it signs for
    /// 127.0.0.1, ::1 and localhost, written to DIR (partners-ca.pem,
    /// partners.pem, partners-key.pem) before the address line is printed.
    /// Clients trust DIR/partners-ca.pem (ledger-node --partners-ca).
    #[arg(long, env = "LEDGER_PARTNERS_TLS_GENERATE", value_name = "DIR")]
    pub tls_generate: Option<PathBuf>,

    /// Log as JSON lines instead of text (filter with RUST_LOG).
    #[arg(long, env = "LEDGER_PARTNERS_LOG_JSON", value_parser = BoolishValueParser::new())]
    pub log_json: bool,

    /// Chance that a new charge is declined (0..=1).
    #[arg(long, env = "LEDGER_PARTNERS_DECLINE_RATE", default_value_t = 0.0)]
    pub decline_rate: f64,

    /// How long an unknown-outcome reply is held, in ms (<= 120000).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_UNKNOWN_DELAY_MS",
        default_value_t = 30_000
    )]
    pub unknown_delay_ms: u64,

    /// What an unknown outcome looks like to the caller.
    #[arg(long, env = "LEDGER_PARTNERS_UNKNOWN_MODE", value_enum, default_value_t = UnknownModeArg::Mixed)]
    pub unknown_mode: UnknownModeArg,

    /// Status code sent by the unexpected-status faults (300..=599).
    #[arg(long, env = "LEDGER_PARTNERS_UNEXPECTED_STATUS", default_value_t = 418)]
    pub unexpected_status: u16,

    /// Seed for fault dice and generated ids (reproducible runs).
    #[arg(long, env = "LEDGER_PARTNERS_SEED")]
    pub seed: Option<u64>,

    /// Payment: mean latency in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_LATENCY_MS",
        default_value_t = 150,
        help_heading = "Payment"
    )]
    pub payment_latency_ms: u64,
    /// Payment: latency jitter (half-width, uniform) in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_JITTER_MS",
        default_value_t = 50,
        help_heading = "Payment"
    )]
    pub payment_jitter_ms: u64,
    /// Payment: full outage (503 for everything, nothing applied).
    #[arg(long, env = "LEDGER_PARTNERS_PAYMENT_OUTAGE", value_parser = BoolishValueParser::new(), help_heading = "Payment")]
    pub payment_outage: bool,
    /// Payment: chance of a 503 with nothing applied.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_ERROR_RATE",
        default_value_t = 0.0,
        help_heading = "Payment"
    )]
    pub payment_error_rate: f64,
    /// Payment: chance of an unknown outcome (applied, reply delayed or dropped).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_UNKNOWN_RATE",
        default_value_t = 0.0,
        help_heading = "Payment"
    )]
    pub payment_unknown_rate: f64,
    /// Payment: chance of a malformed JSON reply (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_MALFORMED_JSON_RATE",
        default_value_t = 0.0,
        help_heading = "Payment"
    )]
    pub payment_malformed_json_rate: f64,
    /// Payment: chance of an unexpected status code (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_UNEXPECTED_STATUS_RATE",
        default_value_t = 0.0,
        help_heading = "Payment"
    )]
    pub payment_unexpected_status_rate: f64,
    /// Payment: chance of a truncated body and aborted connection (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_PAYMENT_TRUNCATED_BODY_RATE",
        default_value_t = 0.0,
        help_heading = "Payment"
    )]
    pub payment_truncated_body_rate: f64,
    /// Documents: mean latency in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_LATENCY_MS",
        default_value_t = 100,
        help_heading = "Documents"
    )]
    pub documents_latency_ms: u64,
    /// Documents: latency jitter (half-width, uniform) in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_JITTER_MS",
        default_value_t = 30,
        help_heading = "Documents"
    )]
    pub documents_jitter_ms: u64,
    /// Documents: full outage (503 for everything, nothing applied).
    #[arg(long, env = "LEDGER_PARTNERS_DOCUMENTS_OUTAGE", value_parser = BoolishValueParser::new(),
        help_heading = "Documents"
    )]
    pub documents_outage: bool,
    /// Documents: chance of a 503 with nothing applied.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_ERROR_RATE",
        default_value_t = 0.0,
        help_heading = "Documents"
    )]
    pub documents_error_rate: f64,
    /// Documents: chance of an unknown outcome (applied, reply delayed or dropped).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_UNKNOWN_RATE",
        default_value_t = 0.0,
        help_heading = "Documents"
    )]
    pub documents_unknown_rate: f64,
    /// Documents: chance of a malformed JSON reply (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_MALFORMED_JSON_RATE",
        default_value_t = 0.0,
        help_heading = "Documents"
    )]
    pub documents_malformed_json_rate: f64,
    /// Documents: chance of an unexpected status code (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_UNEXPECTED_STATUS_RATE",
        default_value_t = 0.0,
        help_heading = "Documents"
    )]
    pub documents_unexpected_status_rate: f64,
    /// Documents: chance of a truncated body and aborted connection (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_DOCUMENTS_TRUNCATED_BODY_RATE",
        default_value_t = 0.0,
        help_heading = "Documents"
    )]
    pub documents_truncated_body_rate: f64,
    /// Email: mean latency in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_LATENCY_MS",
        default_value_t = 50,
        help_heading = "Email"
    )]
    pub email_latency_ms: u64,
    /// Email: latency jitter (half-width, uniform) in ms.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_JITTER_MS",
        default_value_t = 20,
        help_heading = "Email"
    )]
    pub email_jitter_ms: u64,
    /// Email: full outage (503 for everything, nothing applied).
    #[arg(long, env = "LEDGER_PARTNERS_EMAIL_OUTAGE", value_parser = BoolishValueParser::new(), help_heading = "Email")]
    pub email_outage: bool,
    /// Email: chance of a 503 with nothing applied.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_ERROR_RATE",
        default_value_t = 0.0,
        help_heading = "Email"
    )]
    pub email_error_rate: f64,
    /// Email: chance of an unknown outcome (applied, reply delayed or dropped).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_UNKNOWN_RATE",
        default_value_t = 0.0,
        help_heading = "Email"
    )]
    pub email_unknown_rate: f64,
    /// Email: chance of a malformed JSON reply (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_MALFORMED_JSON_RATE",
        default_value_t = 0.0,
        help_heading = "Email"
    )]
    pub email_malformed_json_rate: f64,
    /// Email: chance of an unexpected status code (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_UNEXPECTED_STATUS_RATE",
        default_value_t = 0.0,
        help_heading = "Email"
    )]
    pub email_unexpected_status_rate: f64,
    /// Email: chance of a truncated body and aborted connection (applied).
    #[arg(
        long,
        env = "LEDGER_PARTNERS_EMAIL_TRUNCATED_BODY_RATE",
        default_value_t = 0.0,
        help_heading = "Email"
    )]
    pub email_truncated_body_rate: f64,
}

/// `--unknown-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnknownModeArg {
    /// Hold the reply for --unknown-delay-ms.
    Delay,
    /// Send the head, then abort the connection.
    Drop,
    /// Delay or drop, 50/50.
    Mixed,
}

impl From<UnknownModeArg> for UnknownMode {
    fn from(mode: UnknownModeArg) -> Self {
        match mode {
            UnknownModeArg::Delay => UnknownMode::Delay,
            UnknownModeArg::Drop => UnknownMode::Drop,
            UnknownModeArg::Mixed => UnknownMode::Mixed,
        }
    }
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files {
        /// The certificate chain (PEM).
        cert: PathBuf,
        /// Its private key (PEM).
        key: PathBuf,
    },
    /// `--tls-generate DIR`.
    Generate(PathBuf),
}

impl Args {
    /// How to serve HTTPS, or `None` for plaintext HTTP. (clap already
    /// refused a cert without its key, and files together with generation.)
    pub fn tls(&self) -> Option<TlsSource> {
        match (&self.tls_cert, &self.tls_key, &self.tls_generate) {
            (Some(cert), Some(key), None) => Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None, Some(dir)) => Some(TlsSource::Generate(dir.clone())),
            _ => None,
        }
    }

    /// The fault config these flags describe, validated.
    pub fn fault_config(&self) -> Result<FaultConfig, FaultConfigError> {
        let config = FaultConfig {
            payment: ServiceFaults {
                latency: Latency::new(self.payment_latency_ms, self.payment_jitter_ms),
                outage: self.payment_outage,
                error_rate: self.payment_error_rate,
                unknown_rate: self.payment_unknown_rate,
                malformed_json_rate: self.payment_malformed_json_rate,
                unexpected_status_rate: self.payment_unexpected_status_rate,
                truncated_body_rate: self.payment_truncated_body_rate,
            },
            documents: ServiceFaults {
                latency: Latency::new(self.documents_latency_ms, self.documents_jitter_ms),
                outage: self.documents_outage,
                error_rate: self.documents_error_rate,
                unknown_rate: self.documents_unknown_rate,
                malformed_json_rate: self.documents_malformed_json_rate,
                unexpected_status_rate: self.documents_unexpected_status_rate,
                truncated_body_rate: self.documents_truncated_body_rate,
            },
            email: ServiceFaults {
                latency: Latency::new(self.email_latency_ms, self.email_jitter_ms),
                outage: self.email_outage,
                error_rate: self.email_error_rate,
                unknown_rate: self.email_unknown_rate,
                malformed_json_rate: self.email_malformed_json_rate,
                unexpected_status_rate: self.email_unexpected_status_rate,
                truncated_body_rate: self.email_truncated_body_rate,
            },
            decline_rate: self.decline_rate,
            unknown_delay_ms: self.unknown_delay_ms,
            unknown_mode: self.unknown_mode.into(),
            unexpected_status: self.unexpected_status,
            seed: self.seed,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ledger-partners").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn flag_defaults_equal_library_defaults() {
        let args = parse(&[]);
        assert_eq!(args.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(args.fault_config().unwrap(), FaultConfig::default());
        assert_eq!(args.tls(), None, "plaintext by default");
    }

    #[test]
    fn tls_flags() {
        assert_eq!(
            parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).tls(),
            Some(TlsSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(
            parse(&["--tls-generate", "/tmp/x"]).tls(),
            Some(TlsSource::Generate("/tmp/x".into()))
        );
        let refused = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("ledger-partners").chain(args.iter().copied()))
                .is_err()
        };
        assert!(refused(&["--tls-cert", "c.pem"]), "a cert needs its key");
        assert!(refused(&["--tls-key", "k.pem"]), "a key needs its cert");
        assert!(refused(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-generate",
            "d"
        ]));
    }

    #[test]
    fn flags_reach_the_config() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--decline-rate",
            "0.5",
            "--payment-latency-ms",
            "5",
            "--payment-jitter-ms",
            "1",
            "--documents-outage",
            "--email-truncated-body-rate",
            "1",
            "--unknown-mode",
            "drop",
            "--unknown-delay-ms",
            "100",
            "--seed",
            "9",
        ]);
        let config = args.fault_config().unwrap();
        assert_eq!(config.decline_rate, 0.5);
        assert_eq!(config.payment.latency, Latency::new(5, 1));
        assert!(config.documents.outage);
        assert!(!config.payment.outage);
        assert_eq!(config.email.truncated_body_rate, 1.0);
        assert_eq!(config.unknown_mode, UnknownMode::Drop);
        assert_eq!(config.unknown_delay_ms, 100);
        assert_eq!(config.seed, Some(9));
    }

    #[test]
    fn invalid_flags_are_rejected() {
        let err = parse(&["--payment-error-rate", "2"])
            .fault_config()
            .unwrap_err();
        assert!(err.to_string().contains("payment.error_rate"), "{err}");
        let err = parse(&["--email-latency-ms", "60001"])
            .fault_config()
            .unwrap_err();
        assert!(err.to_string().contains("email.latency.mean_ms"), "{err}");
        assert!(Args::try_parse_from(["ledger-partners", "--unknown-mode", "sometimes"]).is_err());
    }
}
