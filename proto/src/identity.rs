//! Who a certificate speaks for: the contract between `ledgerctl certs`, which writes it, and the
//! node, which reads it from the peer's certificate.
//!
//! Every certificate the cluster CA issues carries one URI subject alternative name of the form
//! `spiffe://<cluster-id>/<role>/<name>` (a SPIFFE ID: the cluster id is the trust domain):
//! - `spiffe://<cluster-id>/node/<node-id>`: a node of that cluster (`node-id` ≥ 1);
//! - `spiffe://<cluster-id>/operator/<name>`: an operator (the `Cluster` service, deals);
//! - `spiffe://<cluster-id>/client/<name>`: a client (submits, reads, watches).
//!
//! The cluster id is part of the identity, so a certificate issued for another cluster by the
//! same CA does not speak for this one.

use std::fmt;

/// The URI scheme of identities.
const SCHEME: &str = "spiffe://";

/// The role a certificate grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A node of the cluster, by its Raft node id.
    Node(u64),
    /// An operator, by name.
    Operator(String),
    /// A client, by name.
    Client(String),
}

/// An identity: a role within one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster the identity belongs to.
    pub cluster_id: String,
    /// What it may do there.
    pub role: Role,
}

/// Why a string is not an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityError(String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// Whether `name` may be a cluster id or a role name in an identity: 1 to 64 of ASCII letters,
/// digits, `.`, `_` and `-` (what a SPIFFE trust domain or path segment allows without escaping).
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Identity {
    /// A node's identity.
    pub fn node(cluster_id: &str, node_id: u64) -> Identity {
        Identity {
            cluster_id: cluster_id.to_owned(),
            role: Role::Node(node_id),
        }
    }

    /// The URI written into the certificate.
    pub fn to_uri(&self) -> String {
        let (role, name) = match &self.role {
            Role::Node(id) => ("node", id.to_string()),
            Role::Operator(name) => ("operator", name.clone()),
            Role::Client(name) => ("client", name.clone()),
        };
        format!("{SCHEME}{}/{role}/{name}", self.cluster_id)
    }

    /// Parses a certificate's URI; anything but exactly the forms above is refused.
    pub fn parse_uri(uri: &str) -> Result<Identity, IdentityError> {
        let bad = |why: &str| Err(IdentityError(format!("identity {uri:?}: {why}")));
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return bad("not a spiffe:// URI");
        };
        let mut parts = rest.split('/');
        let (Some(cluster_id), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return bad("expected spiffe://<cluster-id>/<role>/<name>");
        };
        if !is_valid_name(cluster_id) || !is_valid_name(name) {
            return bad("names are 1 to 64 of A-Z a-z 0-9 . _ -");
        }
        let role = match role {
            "node" => match name.parse::<u64>() {
                Ok(id) if id >= 1 && name == id.to_string() => Role::Node(id),
                _ => return bad("a node's name is its id, 1 or more"),
            },
            "operator" => Role::Operator(name.to_owned()),
            "client" => Role::Client(name.to_owned()),
            _ => return bad("the role is node, operator or client"),
        };
        Ok(Identity {
            cluster_id: cluster_id.to_owned(),
            role,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips() {
        for role in [
            Role::Node(7),
            Role::Operator("alice".into()),
            Role::Client("web-1".into()),
        ] {
            let identity = Identity {
                cluster_id: "prod.eu-1".into(),
                role,
            };
            assert_eq!(Identity::parse_uri(&identity.to_uri()), Ok(identity));
        }
        assert_eq!(
            Identity::node("c", 3).to_uri(),
            "spiffe://c/node/3".to_string()
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for uri in [
            "https://c/node/1",
            "spiffe://c/node/0",
            "spiffe://c/node/01",
            "spiffe://c/node/-1",
            "spiffe://c/node/1/extra",
            "spiffe://c/admin/x",
            "spiffe://c/client/",
            "spiffe:///client/x",
            "spiffe://c d/client/x",
            "spiffe://c/client/x\u{0}",
        ] {
            assert!(Identity::parse_uri(uri).is_err(), "{uri}");
        }
    }
}
