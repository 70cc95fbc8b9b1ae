//! The RESP codec (Redis's wire protocol), pure: bytes and spans in,
//! commands, reply lengths and routing classes out; no I/O. The first part
//! of Redis at layer 7 (issue 19): the listener that splits a client's
//! commands between the primary and the replicas builds on it.
//!
//! - [`parse`]: a client's command (multi-bulk or inline) as spans of its
//!   arguments, and the length of one complete RESP2/RESP3 reply, strictly
//!   and within [`parse::Limits`].
//! - [`command`]: a command's routing [`command::Class`], from the
//!   primary's `COMMAND` answer or a built-in table.

pub mod command;
pub mod parse;

pub use crate::h1::Span;
