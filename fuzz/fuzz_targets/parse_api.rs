//! The API's parsing of what clients and operators send, before anything is proposed, as far
//! as it lives in the state machine crate: `Money::parse` (and `FromStr`), `RequestId::parse`
//! (and `FromStr`), `validate_deal_id` / `validate_user_id`, and the `validate()` of the
//! commands the node builds from requests (`Submit`, `CreateDeal`, `AbortSaga`), composed the way
//! `node/src/grpc/convert.rs` composes them. The node's `convert` functions themselves are `pub`
//! but live in the node crate, which this crate does not build (see `Cargo.toml`); what they add
//! on top (default seat count, blank-reason check, page tokens) is not fuzzed here.
//!
//! Asserts: never panics; a parsed amount is a valid amount, formats and re-parses to the same
//! value, and equals the exact value of the text (checked against a plain reference parser:
//! the contract is "a positive decimal with at most two significant fraction digits"); a text
//! in the canonical form `digits[.digits]` of a valid amount is accepted; a parsed request id
//! is not nil and round-trips through its text; accepted ids are within their length and
//! alphabet; a request that parses and validates makes a command that round-trips through the
//! log codec and that `apply` accepts as well-formed.

#![no_main]

use arbitrary::Arbitrary;
use ledger_state_machine::{
    codec, validate_deal_id, validate_user_id, Command, CreateDeal, Money, RequestId, Submit,
    DEAL_ID_LEN_MAX, MAX_INVESTORS_LIMIT, MAX_WAITLIST_LIMIT, USER_ID_LEN_MAX, WAITLIST_TTL_MS_MAX,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Money(&'a str),
    /// Bytes read as a text over the alphabet of decimals (and a few others), so that most
    /// inputs reach the decimal parser.
    MoneyDigits(Vec<u8>),
    RequestId(&'a str),
    Id(&'a str),
    Submit {
        request_id: &'a str,
        deal_id: &'a str,
        user_id: &'a str,
        amount: Vec<u8>,
        waitlist: bool,
        waitlist_ttl_ms: Option<u64>,
    },
    CreateDeal {
        deal_id: &'a str,
        amount: Vec<u8>,
        max_investors: u32,
        min_ticket: Option<Vec<u8>>,
        max_ticket: Option<Vec<u8>>,
        opens_at_ms: Option<u64>,
        closes_at_ms: Option<u64>,
        max_waitlist: u32,
    },
    Abort {
        request_id: &'a str,
        reason: &'a str,
    },
}
const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789.-+e_ ";

fn digits(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// The exact value in cents of a plain decimal `int[.frac]` (ASCII digits only, at least one
/// digit), if it is a valid amount: positive, at most `Money::MAX`, no non-zero digit after the
/// second fraction digit. `Err(())` for a text that is not of that form.
fn reference(text: &str) -> Result<Option<u64>, ()> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(int) || !is_digits(frac) || int.len() + frac.len() == 0 {
        return Err(());
    }
    let int = int.trim_start_matches('0');
    if int.len() > 15 {
        return Ok(None);
    }
    let units: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| ())?
    };
    let (cents_digits, beyond) = frac.split_at(frac.len().min(2));
    if beyond.bytes().any(|b| b != b'0') {
        return Ok(None);
    }
    let mut cents_text = cents_digits.to_owned();
    while cents_text.len() < 2 {
        cents_text.push('0');
    }
    let cents = units * 100 + cents_text.parse::<u64>().map_err(|_| ())?;
    Ok((cents > 0 && cents <= Money::MAX.cents()).then_some(cents))
}

fn check_money(text: &str) {
    let parsed = Money::parse(text);
    assert_eq!(text.parse::<Money>(), parsed);
    let canonical = text.len() <= Money::MAX_TEXT_LEN
        && text.split('.').count() <= 2
        && !text.starts_with('.')
        && !text.ends_with('.');
    match (&parsed, reference(text)) {
        (Ok(money), exact) => {
            assert!(money.is_valid_amount(), "{text:?} parsed to {money:?}");
            assert_eq!(
                exact,
                Ok(Some(money.cents())),
                "{text:?} parsed to {money}, which is not its exact value"
            );
            let shown = money.to_string();
            assert_eq!(
                Money::parse(&shown),
                Ok(*money),
                "{shown:?} does not re-parse"
            );
            assert_eq!(Money::from_decimal(money.to_decimal()), Ok(*money));
        }
        (Err(error), Ok(Some(cents))) if canonical => {
            panic!("{text:?} is the valid amount of {cents} cents but was refused: {error}")
        }
        (Err(_), _) => {}
    }
}

fn check_request_id(text: &str) -> Option<RequestId> {
    let parsed = RequestId::parse(text);
    assert_eq!(text.parse::<RequestId>(), parsed);
    let id = parsed.ok()?;
    assert!(id.is_valid());
    assert_eq!(RequestId::parse(&id.to_string()), Ok(id));
    Some(id)
}

fn check_ids(text: &str) {
    if validate_deal_id(text).is_ok() {
        assert!((1..=DEAL_ID_LEN_MAX).contains(&text.len()));
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
    }
    if validate_user_id(text).is_ok() {
        assert!((1..=USER_ID_LEN_MAX).contains(&text.len()));
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b)));
    }
}

fn check_codec(command: &Command) {
    command
        .validate()
        .expect("an accepted request makes a valid command");
    let bytes = codec::encode(command);
    let again: Command = codec::decode(&bytes).expect("a command decodes");
    assert_eq!(&again, command);
}

/// `convert::money`: `Money::parse`, after the reference checks.
fn money(text: &str) -> Option<Money> {
    check_money(text);
    Money::parse(text).ok()
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Money(text) => check_money(text),
        Input::MoneyDigits(bytes) => check_money(&digits(&bytes)),
        Input::RequestId(text) => {
            check_request_id(text);
        }
        Input::Id(text) => check_ids(text),
        Input::Submit {
            request_id,
            deal_id,
            user_id,
            amount,
            waitlist,
            waitlist_ttl_ms,
        } => {
            // As `convert::submit`: parse the id and the amount, then validate the whole.
            check_ids(deal_id);
            check_ids(user_id);
            let amount = money(&digits(&amount));
            let (Some(request_id), Some(amount)) = (check_request_id(request_id), amount) else {
                return;
            };
            let submit = Submit {
                request_id,
                deal_id: deal_id.to_owned(),
                user_id: user_id.to_owned(),
                amount,
                waitlist,
                waitlist_ttl_ms,
            };
            if submit.validate().is_ok() {
                assert!(validate_deal_id(deal_id).is_ok() && validate_user_id(user_id).is_ok());
                assert!(waitlist_ttl_ms.is_none_or(|ttl| waitlist && ttl <= WAITLIST_TTL_MS_MAX));
                assert!(amount.is_valid_amount());
                check_codec(&Command::Submit(submit));
            }
        }
        Input::CreateDeal {
            deal_id,
            amount,
            max_investors,
            min_ticket,
            max_ticket,
            opens_at_ms,
            closes_at_ms,
            max_waitlist,
        } => {
            // As `convert::create_deal`: parse the amounts, then validate the terms.
            check_ids(deal_id);
            let Some(amount) = money(&digits(&amount)) else {
                return;
            };
            let ticket = |t: Option<Vec<u8>>| match t {
                None => Ok(None),
                Some(t) => money(&digits(&t)).map(Some).ok_or(()),
            };
            let (Ok(min_ticket), Ok(max_ticket)) = (ticket(min_ticket), ticket(max_ticket)) else {
                return;
            };
            let create = CreateDeal {
                deal_id: deal_id.to_owned(),
                amount,
                max_investors,
                min_ticket,
                max_ticket,
                opens_at_ms,
                closes_at_ms,
                max_waitlist,
            };
            if create.validate().is_ok() {
                assert!((1..=MAX_INVESTORS_LIMIT).contains(&max_investors));
                assert!(min_ticket.is_none_or(|min| min <= amount));
                if let (Some(min), Some(max)) = (min_ticket, max_ticket) {
                    assert!(min <= max);
                }
                assert!((1..=MAX_WAITLIST_LIMIT).contains(&max_waitlist));
                if let (Some(opens), Some(closes)) = (opens_at_ms, closes_at_ms) {
                    assert!(opens < closes);
                }
                check_codec(&Command::CreateDeal(create));
            }
        }
        Input::Abort { request_id, reason } => {
            let Some(request_id) = check_request_id(request_id) else {
                return;
            };
            let command = Command::AbortSaga {
                request_id,
                reason: reason.to_owned(),
            };
            if command.validate().is_ok() {
                assert!(reason.len() <= ledger_state_machine::ERROR_TEXT_LEN_MAX);
                assert!(!reason.chars().any(char::is_control));
                check_codec(&command);
            }
        }
    }
});
