//! The `consent` command line's library: key schedule, node client and commands.
//!
//! # Layout
//! - [`keys`]: the customer's key schedule (recovery phrase, per-brand subject keys, blinded
//!   recovery keys).

#![deny(missing_docs)]

pub mod keys;
