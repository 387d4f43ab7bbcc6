//! The checker: verdicts on the invariants of `DESIGN.md` §4.5 from a recorded run.
