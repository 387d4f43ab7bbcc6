//! What a team would build instead of the ledger, driven by `ledgerctl bench --peer` with the
//! same shapes, clients and report as the ledger (issue #15, `scripts/bench.sh --peers`).
//!
//! Both do what one `Submit` does, minus the replication: look the request id up (a retry gets
//! the first decision), check the deal's seats and remaining amount, record the investment and
//! the decision, durably before answering.
//! - **Redis**: one Lua script per request (atomic on the server), the deal a hash, the decision
//!   a key per request id; the server runs with `appendfsync always`. A batch is a pipeline of
//!   scripts in one round trip.
//! - **PostgreSQL**: one PL/pgSQL function per request that locks the deal's row
//!   (`SELECT … FOR UPDATE`), in its own transaction (synchronous commit, fsync on). A batch is
//!   one statement calling it for every request, one transaction.

use anyhow::{bail, Context, Result};

/// Which peer (`--peer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    Redis,
    Postgres,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Redis => "redis",
            PeerKind::Postgres => "postgres",
        }
    }
}

/// The decision a peer returns: `None` admitted, or the reject reason (the ledger's names).
pub type PeerDecision = Option<&'static str>;

const REDIS_SUBMIT: &str = r#"
local prior = redis.call('HGET', KEYS[2], 'outcome')
if prior then return prior end
local deal = redis.call('HMGET', KEYS[1], 'seats', 'max', 'remaining')
if not deal[2] then return 'DEAL_NOT_FOUND' end
local out
if tonumber(deal[1]) >= tonumber(deal[2]) then
  out = 'INVESTOR_LIMIT_REACHED'
elseif tonumber(deal[3]) < tonumber(ARGV[1]) then
  out = 'AMOUNT_EXCEEDS_REMAINING'
else
  redis.call('HINCRBY', KEYS[1], 'seats', 1)
  redis.call('HINCRBY', KEYS[1], 'remaining', -tonumber(ARGV[1]))
  out = 'ADMITTED'
end
redis.call('HSET', KEYS[2], 'deal', KEYS[1], 'user', ARGV[2], 'amount', ARGV[1], 'outcome', out)
return out
"#;

const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deals (
  id text PRIMARY KEY,
  max_investors integer NOT NULL,
  seats integer NOT NULL DEFAULT 0,
  remaining bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS investments (
  request_id text PRIMARY KEY,
  deal_id text NOT NULL REFERENCES deals (id),
  user_id text NOT NULL,
  amount bigint NOT NULL,
  outcome text NOT NULL
);
CREATE OR REPLACE FUNCTION submit(p_deal text, p_request text, p_user text, p_amount bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  d deals%ROWTYPE;
  prior text;
  out text;
BEGIN
  SELECT outcome INTO prior FROM investments WHERE request_id = p_request;
  IF FOUND THEN RETURN prior; END IF;
  SELECT * INTO d FROM deals WHERE id = p_deal FOR UPDATE;
  IF NOT FOUND THEN RETURN 'DEAL_NOT_FOUND'; END IF;
  IF d.seats >= d.max_investors THEN
    out := 'INVESTOR_LIMIT_REACHED';
  ELSIF d.remaining < p_amount THEN
    out := 'AMOUNT_EXCEEDS_REMAINING';
  ELSE
    UPDATE deals SET seats = seats + 1, remaining = remaining - p_amount WHERE id = p_deal;
    out := 'ADMITTED';
  END IF;
  INSERT INTO investments VALUES (p_request, p_deal, p_user, p_amount, out);
  RETURN out;
END $$;
"#;

/// A deal's room on the peers: as `load::create_deals` gives the ledger's, in cents.
const DEAL_AMOUNT_CENTS: i64 = 1_000_000_000_000 * 100;

/// One client's connection to a peer.
pub enum PeerConn {
    Redis {
        conn: redis::aio::MultiplexedConnection,
        sha: String,
    },
    Postgres {
        client: tokio_postgres::Client,
        /// The unary and the batch statement, prepared at the first submit (after
        /// [`create_deals`] made the schema).
        statements: Option<(tokio_postgres::Statement, tokio_postgres::Statement)>,
    },
}

/// `"1000.00"` as cents.
pub fn cents(amount: &str) -> Result<i64> {
    let decimal: rust_decimal::Decimal = amount
        .parse()
        .with_context(|| format!("amount {amount:?} is not a decimal"))?;
    let cents = decimal * rust_decimal::Decimal::from(100);
    if !cents.fract().is_zero() || cents <= rust_decimal::Decimal::ZERO {
        bail!("amount {amount:?} must be positive, in whole cents");
    }
    i64::try_from(cents).with_context(|| format!("amount {amount:?} is too large"))
}

/// Connects one client to `addr` (`host:port`).
pub async fn connect(kind: PeerKind, addr: &str) -> Result<PeerConn> {
    match kind {
        PeerKind::Redis => {
            let client = redis::Client::open(format!("redis://{addr}/"))?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("connecting to Redis at {addr}"))?;
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(REDIS_SUBMIT)
                .query_async(&mut conn)
                .await?;
            Ok(PeerConn::Redis { conn, sha })
        }
        PeerKind::Postgres => {
            let (host, port) = addr
                .rsplit_once(':')
                .with_context(|| format!("--peer-addr {addr:?} is not host:port"))?;
            let config = format!("host={host} port={port} user=postgres dbname=postgres");
            let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to PostgreSQL at {addr}"))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("PostgreSQL connection: {error}");
                }
            });
            Ok(PeerConn::Postgres {
                client,
                statements: None,
            })
        }
    }
}

/// Creates deals `{prefix}-0..count` with `max_investors` seats (the schema first, on
/// PostgreSQL).
pub async fn create_deals(
    conn: &mut PeerConn,
    prefix: &str,
    count: usize,
    max_investors: u32,
) -> Result<()> {
    match conn {
        PeerConn::Redis { conn, .. } => {
            for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
                let mut pipe = redis::pipe();
                for d in chunk {
                    pipe.cmd("HSET")
                        .arg(format!("{prefix}-{d}"))
                        .arg("seats")
                        .arg(0)
                        .arg("max")
                        .arg(max_investors)
                        .arg("remaining")
                        .arg(DEAL_AMOUNT_CENTS)
                        .ignore();
                }
                pipe.query_async::<()>(conn).await?;
            }
        }
        PeerConn::Postgres { client, .. } => {
            client.batch_execute(POSTGRES_SCHEMA).await?;
            let ids: Vec<String> = (0..count).map(|d| format!("{prefix}-{d}")).collect();
            client
                .execute(
                    "INSERT INTO deals (id, max_investors, remaining) \
                     SELECT id, $2, $3 FROM unnest($1::text[]) AS t(id)",
                    &[&ids, &(max_investors as i32), &DEAL_AMOUNT_CENTS],
                )
                .await?;
        }
    }
    Ok(())
}

/// Submits `(deal, investor)` requests of `cents` each; one answer per request, in order, or one
/// error for the call. A request's id is `deal:investor` (a bench run's deal prefix is its own,
/// so ids never repeat across runs on one server, as the ledger's fresh UUIDs do not).
pub async fn submit(
    conn: &mut PeerConn,
    requests: &[(String, String)],
    cents: i64,
) -> Result<Vec<PeerDecision>> {
    let answers: Vec<String> = match conn {
        PeerConn::Redis { conn, sha } => {
            let mut pipe = redis::pipe();
            for (deal, investor) in requests {
                pipe.cmd("EVALSHA")
                    .arg(&*sha)
                    .arg(2)
                    .arg(deal)
                    .arg(format!("inv:{deal}:{investor}"))
                    .arg(cents)
                    .arg(investor);
            }
            pipe.query_async(conn).await?
        }
        PeerConn::Postgres { client, statements } => {
            if statements.is_none() {
                let one = client
                    .prepare("SELECT submit($1, $1 || ':' || $2, $2, $3)")
                    .await?;
                let many = client
                    .prepare(
                        "SELECT submit(d, d || ':' || u, u, $3) \
                         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(d, u, n) \
                         ORDER BY n",
                    )
                    .await?;
                *statements = Some((one, many));
            }
            let Some((one, many)) = statements else {
                unreachable!("prepared above")
            };
            if let [(deal, investor)] = requests {
                let row = client.query_one(&*one, &[deal, investor, &cents]).await?;
                vec![row.get(0)]
            } else {
                let deals: Vec<&str> = requests.iter().map(|(d, _)| d.as_str()).collect();
                let investors: Vec<&str> = requests.iter().map(|(_, i)| i.as_str()).collect();
                client
                    .query(&*many, &[&deals, &investors, &cents])
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            }
        }
    };
    if answers.len() != requests.len() {
        bail!("{} answers to {} requests", answers.len(), requests.len());
    }
    answers.iter().map(|answer| decision(answer)).collect()
}

fn decision(answer: &str) -> Result<PeerDecision> {
    Ok(match answer {
        "ADMITTED" => None,
        "INVESTOR_LIMIT_REACHED" => Some("INVESTOR_LIMIT_REACHED"),
        "AMOUNT_EXCEEDS_REMAINING" => Some("AMOUNT_EXCEEDS_REMAINING"),
        other => bail!("unexpected answer {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_whole_positive_cents() {
        assert_eq!(cents("1000.00").unwrap(), 100_000);
        assert_eq!(cents("0.01").unwrap(), 1);
        assert!(cents("0.001").is_err());
        assert!(cents("0").is_err());
        assert!(cents("-5").is_err());
        assert!(cents("ten").is_err());
    }

    #[test]
    fn only_known_answers_are_decisions() {
        assert_eq!(decision("ADMITTED").unwrap(), None);
        assert_eq!(
            decision("INVESTOR_LIMIT_REACHED").unwrap(),
            Some("INVESTOR_LIMIT_REACHED")
        );
        assert!(decision("DEAL_NOT_FOUND").is_err());
    }
}
