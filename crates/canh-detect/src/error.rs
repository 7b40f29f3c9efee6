//! Errors of rule loading and compilation.

/// Why a rule could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule text is not valid YAML or not a Sigma document.
    #[error("invalid rule: {0}")]
    Invalid(String),
    /// The rule is valid Sigma but uses something this engine or its pipelines cannot map.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A rule file could not be read.
    #[error("failed to read rule file {path}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

impl RuleError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        RuleError::Invalid(msg.into())
    }
    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        RuleError::Unsupported(msg.into())
    }
}
