#![doc = include_str!("../README.md")]

mod compile;
mod condition;
pub mod correlation;
mod engine;
mod error;
mod event;
mod fast;
pub mod indicators;
mod ir;
mod modifiers;
pub mod pipeline;
mod rule;
mod ruleset;
mod value;

#[cfg(test)]
mod tests;

pub use correlation::{CorrelationAlert, CorrelationRule, CorrelationType, Correlator};
pub use engine::{Engine, Match};
pub use error::RuleError;
pub use event::PreparedEvent;
pub use indicators::{
    Indicator, IndicatorError, IndicatorKind, IndicatorLoad, IndicatorMatch, IndicatorSet,
};
pub use pipeline::LogSource;
pub use rule::{RuleMeta, describe};
pub use ruleset::{LoadOptions, RuleReport, RuleSet, RuleStatus, split_documents};
