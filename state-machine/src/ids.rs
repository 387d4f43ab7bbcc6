//! Identifiers: request ids (UUIDs chosen by clients), node ids, and the rules for deal and user
//! ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node of the cluster; also names its saga executor.
pub type NodeId = u64;

/// Longest deal id, in bytes (`DESIGN.md` §4.1).
pub const DEAL_ID_LEN_MAX: usize = 64;
/// Longest user id, in bytes.
pub const USER_ID_LEN_MAX: usize = 64;

/// The client-chosen id of one investment request, and its idempotency key: a non-nil UUID.
///
/// Held as the UUID's 128 bits so that the hot path hashes and compares integers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(u128);

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a UUID in its usual text forms.
    #[error("not a UUID")]
    NotAUuid,
    /// The nil UUID is never chosen by a real client; refusing it catches unset fields.
    #[error("must not be the nil UUID")]
    NilUuid,
    /// Empty id.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed.
    #[error("longer than {0} characters")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error("may contain only {0}")]
    BadCharacter(&'static str),
}

impl RequestId {
    /// A request id from the UUID's 128 bits; `None` for the nil UUID.
    pub const fn from_u128(bits: u128) -> Option<RequestId> {
        if bits == 0 {
            None
        } else {
            Some(RequestId(bits))
        }
    }

    /// The UUID's 128 bits.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Whether this is a usable id; the nil UUID can only come from a decoded, unchecked command.
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Parses a UUID (hyphenated, simple, braced or URN form).
    pub fn parse(text: &str) -> Result<RequestId, IdError> {
        let uuid = uuid::Uuid::try_parse(text).map_err(|_| IdError::NotAUuid)?;
        RequestId::from_u128(uuid.as_u128()).ok_or(IdError::NilUuid)
    }
}

impl fmt::Display for RequestId {
    /// The lowercase hyphenated form, as clients usually write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

impl FromStr for RequestId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<RequestId, IdError> {
        RequestId::parse(text)
    }
}

/// Checks a deal id: 1–64 characters of `[A-Za-z0-9_.-]`.
pub fn validate_deal_id(deal_id: &str) -> Result<(), IdError> {
    validate_id(
        deal_id,
        DEAL_ID_LEN_MAX,
        b"_.-",
        "letters, digits and _ . -",
    )
}

/// Checks a user id: 1–64 characters of `[A-Za-z0-9_.@:-]`, which admits UUIDs, numeric ids and
/// e-mail-like ids of the platform's own user store.
pub fn validate_user_id(user_id: &str) -> Result<(), IdError> {
    validate_id(
        user_id,
        USER_ID_LEN_MAX,
        b"_.@:-",
        "letters, digits and _ . @ : -",
    )
}

fn validate_id(
    id: &str,
    len_max: usize,
    extra: &[u8],
    allowed: &'static str,
) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > len_max {
        return Err(IdError::TooLong(len_max));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(IdError::BadCharacter(allowed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_parse_uuids_and_refuse_the_rest() {
        let id = RequestId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(id.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(
            RequestId::parse("67E55044-10B1-426F-9247-BB680E5FE0C8"),
            Ok(id)
        );
        assert_eq!(
            RequestId::parse("00000000-0000-0000-0000-000000000000"),
            Err(IdError::NilUuid)
        );
        for bad in [
            "",
            "not-a-uuid",
            "67e55044-10b1-426f-9247-bb680e5fe0c",
            "1234",
        ] {
            assert_eq!(RequestId::parse(bad), Err(IdError::NotAUuid), "{bad:?}");
        }
    }

    #[test]
    fn deal_and_user_ids_follow_their_alphabets() {
        assert_eq!(validate_deal_id("deal-2026.Q4_a"), Ok(()));
        assert_eq!(validate_deal_id(""), Err(IdError::Empty));
        assert_eq!(validate_deal_id(&"d".repeat(64)), Ok(()));
        assert_eq!(validate_deal_id(&"d".repeat(65)), Err(IdError::TooLong(64)));
        assert!(matches!(
            validate_deal_id("a b"),
            Err(IdError::BadCharacter(_))
        ));
        assert!(matches!(
            validate_deal_id("a@b"),
            Err(IdError::BadCharacter(_))
        ));
        assert!(matches!(
            validate_deal_id("é"),
            Err(IdError::BadCharacter(_))
        ));
        assert_eq!(validate_user_id("ana@example.com"), Ok(()));
        assert_eq!(validate_user_id("user:42"), Ok(()));
        assert!(matches!(
            validate_user_id("a/b"),
            Err(IdError::BadCharacter(_))
        ));
        assert_eq!(validate_user_id(&"u".repeat(65)), Err(IdError::TooLong(64)));
    }
}
