//! The one error pool-core returns: a configuration that cannot work.

use std::fmt::Display;

/// A configuration value was refused. Names the field (dotted path) and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: `{field}` {problem}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `breaker.failure_threshold`.
    pub field: String,
    /// What is wrong and what is allowed, e.g. `must be in 1..=1000, got 0`.
    pub problem: String,
}

impl ConfigError {
    /// A refusal of `field` for `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { field: field.into(), problem: problem.into() }
    }

    /// The same error with `prefix.` put before the field name.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Refuses `value` unless `min <= value <= max`.
pub(crate) fn check_range<T: PartialOrd + Display>(field: &str, value: T, min: T, max: T) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(field, format!("must be in {min}..={max}, got {value}")));
    }
    Ok(())
}

/// Refuses a zero duration.
pub(crate) fn check_nonzero(field: &str, value: std::time::Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    Ok(())
}

/// The longest span a timeout, interval or ejection time may be: far past any real one, and far
/// inside what a clock holds (jittered arithmetic, and a runtime clock that panics on overflow).
pub(crate) const MAX_SPAN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Refuses a zero span, or one longer than [`MAX_SPAN`].
pub(crate) fn check_span(field: &str, value: std::time::Duration) -> Result<(), ConfigError> {
    check_nonzero(field, value)?;
    if value > MAX_SPAN {
        return Err(ConfigError::new(field, format!("must be at most {MAX_SPAN:?}, got {value:?}")));
    }
    Ok(())
}
