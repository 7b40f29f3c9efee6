#![doc = include_str!("../README.md")]

mod clf;
mod dispatch;
pub mod evtx;
pub mod framing;
pub mod norm;
pub mod parsers;
mod syslog;
mod timefmt;

pub use parsers::{
    Confidence, LogParser, PARSERS, ParseCtx, ParseError, parse_auto, parse_auto_many, parser_by_id,
};
