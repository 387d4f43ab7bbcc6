//! Reading a deal's decisions and checking them: the capacity invariants (I1–I3), a sequential
//! reference of the decision rules (I5), and the real-time order of replies (I5).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ledger_client::NodeClients;
use ledger_proto::pb;

use crate::load::{Acked, Decision};

/// Largest page `ListInvestments` serves.
pub const PAGE_SIZE: u32 = 1_000;

/// Money in cents, from the wire form (`"123.45"`, `"250"`); panics on anything else, since
/// the server only returns canonical money and tests only send valid money through this.
pub fn cents(text: &str) -> u64 {
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(
        fraction.len() <= 2 && !units.is_empty(),
        "not money: {text:?}"
    );
    let units: u64 = units
        .parse()
        .unwrap_or_else(|_| panic!("not money: {text:?}"));
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}")
            .parse()
            .unwrap_or_else(|_| panic!("not money: {text:?}"))
    };
    units * 100 + fraction
}

/// Cents as wire money, `"123.45"`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Every investment of `deal_id`, in decision order, read page by page with `consistency`.
pub async fn list_investments(
    client: &NodeClients,
    deal_id: &str,
    consistency: pb::Consistency,
) -> Result<Vec<pb::Investment>, tonic::Status> {
    let mut admission = client.admission.clone();
    let mut all = Vec::new();
    let mut token = String::new();
    // A bound on the pages, so a server that never ends its listing fails the test.
    for _ in 0..10_000 {
        let call = admission.list_investments(pb::ListInvestmentsRequest {
            deal_id: deal_id.to_owned(),
            page_size: PAGE_SIZE,
            page_token: token.clone(),
            consistency: consistency as i32,
        });
        let page = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("ListInvestments timed out"))??
            .into_inner();
        all.extend(page.investments);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
    panic!("ListInvestments of {deal_id} did not end after 10,000 pages");
}

/// A deal's terms, as the reference rules need them.
#[derive(Clone, Debug)]
pub struct Terms {
    /// Deal amount, cents.
    pub amount: u64,
    /// Seat limit.
    pub max_investors: u32,
    /// Smallest ticket, cents.
    pub min_ticket: Option<u64>,
    /// Largest ticket, cents.
    pub max_ticket: Option<u64>,
}

impl Terms {
    /// The terms of a deal as the server reports it.
    pub fn of(deal: &pb::Deal) -> Terms {
        Terms {
            amount: cents(&deal.amount),
            max_investors: deal.max_investors,
            min_ticket: deal.min_ticket.as_deref().map(cents),
            max_ticket: deal.max_ticket.as_deref().map(cents),
        }
    }
}

/// Checks I1–I3 and I5 (sequential part) for one OPEN deal whose investments are all PENDING or
/// REJECTED (no saga has run): the list is in strictly increasing decision order, replaying the
/// decision rules over it yields exactly the recorded decisions, and the deal's counters equal
/// the admitted ones. Returns the number admitted.
pub fn check_deal(deal: &pb::Deal, list: &[pb::Investment]) -> usize {
    use pb::{InvestmentStatus as S, RejectReason as R};
    let terms = Terms::of(deal);
    let mut admitted = 0u32;
    let mut reserved = 0u64;
    let mut holders = HashSet::new();
    let mut previous: Option<(u64, u32)> = None;
    for inv in list {
        let position = (inv.log_index, inv.offset);
        assert!(
            previous.is_none_or(|p| p < position),
            "deal {}: list not in strictly increasing decision order at {position:?} (after \
             {previous:?})",
            deal.deal_id
        );
        previous = Some(position);
        assert_eq!(inv.deal_id, deal.deal_id, "listed under the wrong deal");
        let amount = cents(&inv.amount);
        // The rules of `decide`, in their order.
        let expected = if terms.min_ticket.is_some_and(|min| amount < min)
            || terms.max_ticket.is_some_and(|max| amount > max)
        {
            Err(R::TicketOutOfRange)
        } else if holders.contains(&inv.user_id) {
            Err(R::DuplicateInvestor)
        } else if admitted >= terms.max_investors {
            Err(R::InvestorLimitReached)
        } else if reserved + amount > terms.amount {
            Err(R::AmountExceedsRemaining)
        } else {
            Ok(())
        };
        let recorded = match (S::try_from(inv.status), R::try_from(inv.reject_reason)) {
            (Ok(S::Pending), Ok(R::Unspecified)) => Ok(()),
            (Ok(S::Rejected), Ok(reason)) if reason != R::Unspecified => Err(reason),
            other => panic!("unexpected status/reason {other:?} for {inv:?}"),
        };
        assert_eq!(
            recorded,
            expected,
            "I5: replaying the rules over deal {} disagrees at {position:?} (request {}, user {}, \
             amount {}; before it: {admitted} admitted, {} reserved)",
            deal.deal_id,
            inv.request_id,
            inv.user_id,
            inv.amount,
            money(reserved)
        );
        if recorded.is_ok() {
            admitted += 1;
            reserved += amount;
            // I3: at most one active investment per (deal, user).
            assert!(
                holders.insert(inv.user_id.clone()),
                "I3: user {} admitted twice in deal {}",
                inv.user_id,
                deal.deal_id
            );
        }
    }
    // I1 and I2, against the server's counters.
    assert!(
        admitted <= terms.max_investors,
        "I1: deal {} admitted {admitted} > {}",
        deal.deal_id,
        terms.max_investors
    );
    assert_eq!(
        admitted, deal.investor_count,
        "I1: deal {} lists {admitted} admitted but reports investor_count {}",
        deal.deal_id, deal.investor_count
    );
    assert!(
        reserved <= terms.amount,
        "I2: deal {} reserved {} > amount {}",
        deal.deal_id,
        money(reserved),
        deal.amount
    );
    assert_eq!(
        money(reserved),
        deal.reserved_amount,
        "I2: deal {} lists {} admitted but reports reserved_amount {}",
        deal.deal_id,
        money(reserved),
        deal.reserved_amount
    );
    admitted as usize
}

/// I4 against the listing: every reply's decision is the listed one for its request id, with
/// the same deal, user and amount. Returns how many replies were checked.
pub fn check_replies_listed(acked: &[Acked], listed: &BTreeMap<String, pb::Investment>) -> usize {
    for ack in acked {
        let id = &ack.request.request_id;
        let inv = listed
            .get(id)
            .unwrap_or_else(|| panic!("I6: acknowledged request {id} is not listed: {ack:?}"));
        assert_eq!(
            (&inv.deal_id, &inv.user_id, cents(&inv.amount)),
            (
                &ack.request.deal_id,
                &ack.request.user_id,
                cents(&ack.request.amount)
            ),
            "request {id} is listed with another payload"
        );
        assert_eq!(
            ack.decision(),
            Decision::of(inv),
            "I4: request {id} was answered one decision and lists another"
        );
    }
    acked.len()
}

/// I5, real-time part: if request A's reply arrived before request B was first sent, A is
/// ordered before B. Takes, per request id, the earliest first-send and the earliest reply over
/// all of its submissions (a retry or resubmission may return an older decision, never a newer
/// one). Returns how many ordered pairs the check covered (a count of B's with any A before).
pub fn check_real_time_order(acked: &[Acked]) -> usize {
    // Per request id: (earliest first send, earliest reply, position).
    let mut per_id: BTreeMap<&str, (std::time::Instant, std::time::Instant, (u64, u32))> =
        BTreeMap::new();
    for ack in acked {
        let position = ack.decision().position();
        let entry = per_id.entry(&ack.request.request_id).or_insert((
            ack.first_sent,
            ack.received,
            position,
        ));
        assert_eq!(
            entry.2, position,
            "I4: request {} answered at two positions",
            ack.request.request_id
        );
        entry.0 = entry.0.min(ack.first_sent);
        entry.1 = entry.1.min(ack.received);
    }
    // Sort by reply time; a prefix maximum of positions answers "the latest-ordered request
    // whose reply arrived before t".
    let mut by_reply: Vec<(std::time::Instant, (u64, u32), &str)> = per_id
        .iter()
        .map(|(id, (_, received, position))| (*received, *position, *id))
        .collect();
    by_reply.sort();
    let mut prefix_max: Vec<((u64, u32), &str)> = Vec::with_capacity(by_reply.len());
    for (_, position, id) in &by_reply {
        let best = match prefix_max.last() {
            Some(&(max, max_id)) if max > *position => (max, max_id),
            _ => (*position, *id),
        };
        prefix_max.push(best);
    }
    let mut covered = 0;
    for (id, (sent, _, position)) in &per_id {
        let before = by_reply.partition_point(|(received, _, _)| received < sent);
        if before == 0 {
            continue;
        }
        covered += 1;
        let (max, max_id) = prefix_max[before - 1];
        assert!(
            max < *position,
            "I5: request {max_id} was answered before request {id} was sent, but is ordered at \
             {max:?}, not before {position:?}"
        );
    }
    covered
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn deal(amount: &str, max_investors: u32, count: u32, reserved: &str) -> pb::Deal {
        pb::Deal {
            deal_id: "d".into(),
            amount: amount.into(),
            max_investors,
            investor_count: count,
            reserved_amount: reserved.into(),
            ..pb::Deal::default()
        }
    }

    fn inv(n: u32, user: &str, amount: &str, reason: Option<pb::RejectReason>) -> pb::Investment {
        pb::Investment {
            request_id: format!("r{n}"),
            deal_id: "d".into(),
            user_id: user.into(),
            amount: amount.into(),
            status: match reason {
                None => pb::InvestmentStatus::Pending,
                Some(_) => pb::InvestmentStatus::Rejected,
            } as i32,
            reject_reason: reason.unwrap_or(pb::RejectReason::Unspecified) as i32,
            log_index: 10,
            offset: n,
            ..pb::Investment::default()
        }
    }

    #[test]
    fn money_round_trips() {
        assert_eq!(cents("250"), 25_000);
        assert_eq!(cents("1.5"), 150);
        assert_eq!(cents("1000.05"), 100_005);
        assert_eq!(money(100_005), "1000.05");
    }

    #[test]
    fn the_reference_accepts_a_correct_history() {
        use pb::RejectReason as R;
        let list = [
            inv(0, "a", "60.00", None),
            inv(1, "a", "10.00", Some(R::DuplicateInvestor)),
            inv(2, "b", "50.00", Some(R::AmountExceedsRemaining)),
            inv(3, "b", "40.00", None),
            inv(4, "c", "1.00", Some(R::InvestorLimitReached)),
        ];
        assert_eq!(check_deal(&deal("100.00", 2, 2, "100.00"), &list), 2);
    }

    #[test]
    #[should_panic(expected = "I5")]
    fn the_reference_refuses_a_wrong_decision() {
        let list = [
            inv(0, "a", "60.00", None),
            inv(1, "b", "50.00", None), // over the amount: must be rejected
        ];
        check_deal(&deal("100.00", 2, 2, "110.00"), &list);
    }

    #[test]
    #[should_panic(expected = "I1")]
    fn wrong_counters_are_refused() {
        check_deal(
            &deal("100.00", 2, 2, "60.00"),
            &[inv(0, "a", "60.00", None)],
        );
    }

    fn acked(id: &str, sent: Instant, received: Instant, offset: u32) -> Acked {
        let investment = pb::Investment {
            request_id: id.into(),
            status: pb::InvestmentStatus::Pending as i32,
            log_index: 5,
            offset,
            ..pb::Investment::default()
        };
        Acked {
            request: pb::SubmitRequest {
                request_id: id.into(),
                ..pb::SubmitRequest::default()
            },
            response: pb::SubmitResponse {
                investment: Some(investment),
                log_index: 5,
                offset,
                replayed: false,
            },
            first_sent: sent,
            received,
            attempts: 1,
            retried_on: Vec::new(),
        }
    }

    #[test]
    fn real_time_order_is_checked() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Concurrent requests may be ordered either way; sequential ones may not.
        let ok = [
            acked("a", t, t + ms(10), 1),
            acked("b", t + ms(5), t + ms(12), 0),
            acked("c", t + ms(20), t + ms(30), 2),
        ];
        assert_eq!(check_real_time_order(&ok), 1);
        let bad = [
            acked("a", t, t + ms(10), 3),
            acked("c", t + ms(20), t + ms(30), 2),
        ];
        let result = std::panic::catch_unwind(|| check_real_time_order(&bad));
        assert!(
            result.is_err(),
            "a reversed sequential pair must be refused"
        );
    }
}
