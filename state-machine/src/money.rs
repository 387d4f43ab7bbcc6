//! Money as an exact count of cents.
//!
//! Every amount in the contract has at most two fraction digits and at most 10^12 units, so an
//! integer count of cents in a `u64` holds any amount and any sum of a deal's amounts exactly,
//! with no rounding and cheap arithmetic on the hot path. Decimal strings (`"1000.00"`) are the
//! wire form; [`Money::parse`] and the `Display` impl convert at the edge.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount of money in cents (hundredths of the currency unit).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(u64);

/// Why a string or decimal is not a valid amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a plain decimal number.
    #[error("not a decimal number")]
    NotANumber,
    /// Amounts must be strictly positive.
    #[error("must be greater than zero")]
    NotPositive,
    /// More than two fraction digits carry a value (`"1.005"`).
    #[error("has more than 2 fraction digits")]
    TooPrecise,
    /// Above [`Money::MAX`].
    #[error("exceeds 1000000000000.00")]
    TooLarge,
}

impl Money {
    /// Zero, the neutral element of sums; never a valid amount on its own.
    pub const ZERO: Money = Money(0);
    /// The largest amount the contract accepts: 10^12 units.
    pub const MAX: Money = Money(1_000_000_000_000 * 100);
    /// Longest decimal text accepted by [`Money::parse`]; bounds the parser's work.
    pub const MAX_TEXT_LEN: usize = 32;

    /// An amount from a count of cents, unchecked (tests, codecs, arithmetic).
    pub const fn from_cents(cents: u64) -> Money {
        Money(cents)
    }

    /// The amount in cents.
    pub const fn cents(self) -> u64 {
        self.0
    }

    /// Whether this is a valid amount for a deal or a ticket: `0 < amount <= MAX`.
    pub const fn is_valid_amount(self) -> bool {
        self.0 > 0 && self.0 <= Money::MAX.0
    }

    /// Checks [`Money::is_valid_amount`], saying what is wrong.
    pub fn validate_amount(self) -> Result<Money, MoneyError> {
        if self.0 == 0 {
            Err(MoneyError::NotPositive)
        } else if self.0 > Money::MAX.0 {
            Err(MoneyError::TooLarge)
        } else {
            Ok(self)
        }
    }

    /// Parses a positive decimal string with at most two significant fraction digits
    /// (`"1000"`, `"1000.5"`, `"1000.50"`; trailing zeros such as `"1.500"` are accepted since
    /// they carry no value).
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        if text.is_empty() || text.len() > Money::MAX_TEXT_LEN {
            return Err(MoneyError::NotANumber);
        }
        // Only plain decimals: no exponent, no spaces, no underscores; a sign only in front.
        // Read digit by digit, exactly: a general decimal parser rounds past 28 significant
        // digits ("5.999999999999999999999999999990" would become 6.00, found by fuzzing).
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) || (whole.is_empty() && fraction.is_empty()) {
            return Err(MoneyError::NotANumber);
        }
        let nonzero = |part: &str| part.bytes().any(|b| b != b'0');
        if negative || !(nonzero(whole) || nonzero(fraction)) {
            return Err(MoneyError::NotPositive);
        }
        let whole = whole.trim_start_matches('0');
        let (cents_part, beyond) = fraction.split_at(fraction.len().min(2));
        // 10^12 has 13 digits: a longer whole part is too large whatever follows.
        if whole.len() > 13 {
            return Err(MoneyError::TooLarge);
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::NotANumber)?
        };
        let cents: u64 = format!("{cents_part:0<2}")
            .parse()
            .map_err(|_| MoneyError::NotANumber)?;
        let total = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(cents))
            .ok_or(MoneyError::TooLarge)?;
        // Above the maximum even by a digit past the cents is too large, as before.
        if total > Money::MAX.0 || (total == Money::MAX.0 && nonzero(beyond)) {
            return Err(MoneyError::TooLarge);
        }
        if nonzero(beyond) {
            return Err(MoneyError::TooPrecise);
        }
        Money(total).validate_amount()
    }

    /// Converts an exact decimal, refusing values that cents cannot hold exactly.
    pub fn from_decimal(value: Decimal) -> Result<Money, MoneyError> {
        if value <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if value > Money::MAX.to_decimal() {
            return Err(MoneyError::TooLarge);
        }
        let cents = value * Decimal::ONE_HUNDRED;
        if !cents.fract().is_zero() {
            return Err(MoneyError::TooPrecise);
        }
        let cents: u64 = cents.trunc().try_into().map_err(|_| MoneyError::TooLarge)?;
        Money(cents).validate_amount()
    }

    /// The amount as a decimal with exactly two fraction digits.
    pub fn to_decimal(self) -> Decimal {
        Decimal::from_i128_with_scale(i128::from(self.0), 2)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self + other`, capped at `u64::MAX` cents (only reachable through corrupt input).
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Money {
    /// Always two fraction digits: `"1000.00"`, the wire form of the API.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(text: &str) -> Result<Money, MoneyError> {
        Money::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_to_cents() {
        assert_eq!(Money::parse("1000"), Ok(Money(100_000)));
        assert_eq!(Money::parse("1000.5"), Ok(Money(100_050)));
        assert_eq!(Money::parse("0.01"), Ok(Money(1)));
        assert_eq!(Money::parse("1.500"), Ok(Money(150)));
        assert_eq!(Money::parse("1000000000000"), Ok(Money::MAX));
    }

    #[test]
    fn refuses_what_cents_cannot_hold() {
        assert_eq!(Money::parse("0"), Err(MoneyError::NotPositive));
        assert_eq!(Money::parse("-5"), Err(MoneyError::NotPositive));
        assert_eq!(Money::parse("0.001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("1.005"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("1000000000000.01"), Err(MoneyError::TooLarge));
        for text in ["", " 1", "1e3", "+1", "abc", "1,00", "1_000", "NaN"] {
            assert_eq!(Money::parse(text), Err(MoneyError::NotANumber), "{text:?}");
        }
        assert_eq!(
            Money::parse(&"9".repeat(Money::MAX_TEXT_LEN + 1)),
            Err(MoneyError::NotANumber)
        );
    }

    #[test]
    fn displays_two_fraction_digits_and_round_trips() {
        assert_eq!(Money(100_000).to_string(), "1000.00");
        assert_eq!(Money(5).to_string(), "0.05");
        for cents in [1, 99, 100, 12_345, Money::MAX.0] {
            assert_eq!(Money::parse(&Money(cents).to_string()), Ok(Money(cents)));
            assert_eq!(
                Money::from_decimal(Money(cents).to_decimal()),
                Ok(Money(cents))
            );
        }
    }
}
