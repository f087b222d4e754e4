//! Rewards that arrive from outside: signed decision tokens, and the feedback messages that
//! carry them (ours and Seldon's `Feedback`).

mod message;
mod token;

pub use message::{parse_feedback, Feedback, FeedbackError};
pub use token::{DecisionToken, SigningKey, TokenError, TokenKeys};
