//! `ledger-client`: the client library and the `ledgerctl` operator CLI.
//!
//! Not built yet: it needs the gRPC API of issue #3 and is filled in by issue #5.
