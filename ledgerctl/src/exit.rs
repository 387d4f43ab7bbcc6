//! Exit codes, and how a failed command is reported.

use std::process::ExitCode;

use ledger_client::ClientError;
use serde_json::json;

use crate::cli::Cli;

/// Exit code of a write whose outcome is unknown.
pub const EXIT_OUTCOME_UNKNOWN: u8 = 3;
/// Exit code of `member add-learner` when the learner was added but is still catching up.
pub const EXIT_STILL_CATCHING_UP: u8 = 4;

/// Prints a failed command's error (also as JSON on stdout with `--json`) and picks the exit
/// code: an unknown outcome is told apart from a failure, since the write may have happened.
pub fn report(cli: &Cli, error: &anyhow::Error) -> ExitCode {
    let client_error = error.chain().find_map(|e| e.downcast_ref::<ClientError>());
    let advice = match client_error {
        Some(ClientError::OutcomeUnknown { request_id, .. }) => Some(format!(
            "the request may or may not have been decided; `invest show {request_id}` tells, \
             and submitting it again with --request-id {request_id} is safe (a request id is \
             decided once)"
        )),
        Some(ClientError::OperationOutcomeUnknown { operation, .. }) => Some(format!(
            "{operation} may or may not have taken effect; running the same command again is \
             safe, or check with `cluster status`, `deal show` or `saga show`"
        )),
        _ => None,
    };
    if cli.json {
        let mut value = json!({
            "code": client_error.map_or("ERROR", ClientError::code_name),
            "message": format!("{error:#}"),
        });
        match client_error {
            Some(ClientError::OutcomeUnknown {
                request_id, waited, ..
            }) => {
                value["outcome"] = json!("unknown");
                value["request_id"] = json!(request_id);
                value["waited_ms"] = json!(waited.as_millis() as u64);
            }
            Some(ClientError::OperationOutcomeUnknown {
                operation, waited, ..
            }) => {
                value["outcome"] = json!("unknown");
                value["operation"] = json!(operation);
                value["waited_ms"] = json!(waited.as_millis() as u64);
            }
            _ => {}
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "error": value })).unwrap_or_default()
        );
    }
    match advice {
        Some(advice) => {
            eprintln!("ledgerctl: OUTCOME UNKNOWN: {error:#}\nledgerctl: {advice}");
            ExitCode::from(EXIT_OUTCOME_UNKNOWN)
        }
        None => {
            eprintln!("ledgerctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
