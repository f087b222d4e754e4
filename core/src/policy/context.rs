//! The request context a contextual strategy chooses with: what the decision read of the
//! request (body summary, tenant, path), as the model's configured features.

use super::{Decider, Outcome, RequestView};
use crate::bandit::{Context, Facts};

impl<R: RequestView> Decider<'_, R> {
    /// The features of model `mi`'s strategy for this request; `None` for a strategy without
    /// features. Waits for the body when a feature reads it.
    pub(super) fn request_context(&mut self, mi: usize) -> Result<Option<Context>, Outcome> {
        let cfg = self.cfg;
        let Some(bandit) = cfg.models.get(mi).and_then(|m| m.bandit()) else {
            return Ok(None);
        };
        let features = bandit.features();
        if features.is_empty() {
            return Ok(None);
        }
        let mut facts = Facts::default();
        if features.iter().any(|f| f.needs_body()) {
            match self.summary() {
                Err(()) => return Err(Outcome::NeedBody),
                Ok(None) => {}
                Ok(Some(s)) => {
                    facts.prompt_tokens = s.estimated_prompt_tokens();
                    facts.max_tokens = s.max_tokens;
                    facts.tools = s.has_tools;
                    facts.vision = s.has_image;
                    facts.json_mode = s.json_mode;
                    facts.stream = s.stream;
                }
            }
        }
        let tenant = self.tenant().map(|(name, _)| name.to_string());
        let path = self.path().map(str::to_string);
        facts.tenant = tenant.as_deref();
        facts.path = path.as_deref();
        Ok(Some(Context::of(features, &facts)))
    }
}
