//! The request context a contextual strategy ([`super::linear`]) learns over: a small, fixed
//! vector of features, each normalised to `[0, 1]`, built from what the decision already read
//! of the request (body summary, tenant, path).
//!
//! A [`Context`] is the quantised form (one byte per feature, `value = byte / 255`): `Copy`, so
//! it rides along with a decision (`policy::Route`), and it spells as a few hex digits, so a
//! signed decision token can carry it to the feedback that grades the decision. The vector the
//! math sees is `[1 (bias), features…]`, always rebuilt from the bytes, so the reward updates
//! exactly the vector the selection scored.

use core::fmt;

/// Most features a model may configure (the bias comes on top).
pub const MAX_FEATURES: usize = 8;

/// Dimensions of the vector the math sees: the bias and every feature.
pub const MAX_DIMS: usize = MAX_FEATURES + 1;

/// Token counts are scaled as `log2(1 + n) / 17`, capped at 1: 2^17 = 131,072 tokens is 1.
const LOG2_TOKEN_SCALE: f64 = 17.0;

/// One feature of the vector, as configured (`features` of a `linucb` strategy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feature {
    /// Estimated prompt tokens, log-scaled.
    PromptTokens,
    /// The request's `max_tokens`, log-scaled; 0 when absent.
    MaxTokens,
    /// 1 when the request offers tools.
    Tools,
    /// 1 when it holds an image.
    Vision,
    /// 1 when it asks for JSON output.
    JsonMode,
    /// 1 when it asks for a streamed answer.
    Stream,
    /// 1 when the request's tenant is this one.
    Tenant(String),
    /// 1 when the request path starts with this prefix.
    Path(String),
}

impl Feature {
    /// Reads the configured spelling: `prompt_tokens`, `max_tokens`, `tools`, `vision`,
    /// `json_mode`, `stream`, `tenant:<name>` or `path:<prefix>`.
    pub fn parse(s: &str) -> Option<Feature> {
        Some(match s {
            "prompt_tokens" => Feature::PromptTokens,
            "max_tokens" => Feature::MaxTokens,
            "tools" => Feature::Tools,
            "vision" => Feature::Vision,
            "json_mode" => Feature::JsonMode,
            "stream" => Feature::Stream,
            _ => match s.split_once(':') {
                Some(("tenant", name)) if !name.is_empty() => Feature::Tenant(name.into()),
                Some(("path", p)) if p.starts_with('/') => Feature::Path(p.into()),
                _ => return None,
            },
        })
    }

    /// Whether the value comes from the request body (the decision waits for it).
    pub fn needs_body(&self) -> bool {
        !matches!(self, Feature::Tenant(_) | Feature::Path(_))
    }

    fn value(&self, facts: &Facts<'_>) -> f64 {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        match self {
            Feature::PromptTokens => tokens(facts.prompt_tokens),
            Feature::MaxTokens => tokens(facts.max_tokens.unwrap_or(0)),
            Feature::Tools => flag(facts.tools),
            Feature::Vision => flag(facts.vision),
            Feature::JsonMode => flag(facts.json_mode),
            Feature::Stream => flag(facts.stream),
            Feature::Tenant(t) => flag(facts.tenant == Some(t.as_str())),
            Feature::Path(p) => flag(facts.path.is_some_and(|x| x.starts_with(p.as_str()))),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::PromptTokens => f.write_str("prompt_tokens"),
            Feature::MaxTokens => f.write_str("max_tokens"),
            Feature::Tools => f.write_str("tools"),
            Feature::Vision => f.write_str("vision"),
            Feature::JsonMode => f.write_str("json_mode"),
            Feature::Stream => f.write_str("stream"),
            Feature::Tenant(t) => write!(f, "tenant:{t}"),
            Feature::Path(p) => write!(f, "path:{p}"),
        }
    }
}

/// `log2(1 + n) / 17`, at most 1.
pub fn tokens(n: u64) -> f64 {
    ((n as f64) + 1.0).log2().min(LOG2_TOKEN_SCALE) / LOG2_TOKEN_SCALE
}

/// What the decision knows of a request (zeros and `None` for what it does not).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    pub tools: bool,
    pub vision: bool,
    pub json_mode: bool,
    pub stream: bool,
    pub tenant: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// A request's features, quantised to a byte each. In JSON (the fleet's in-doubt records) its
/// hex, as in a decision id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    len: u8,
    bytes: [u8; MAX_FEATURES],
}

impl Context {
    /// The features of `facts` (the first [`MAX_FEATURES`] of `features`).
    pub fn of(features: &[Feature], facts: &Facts<'_>) -> Context {
        let values: Vec<f64> = features.iter().map(|f| f.value(facts)).collect();
        Context::from_values(&values)
    }

    /// Quantises values in `[0, 1]` (others are clamped; NaN is 0); at most [`MAX_FEATURES`].
    pub fn from_values(values: &[f64]) -> Context {
        let mut bytes = [0u8; MAX_FEATURES];
        let mut len = 0u8;
        for (slot, v) in bytes.iter_mut().zip(values) {
            let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            // In [0, 255] after the clamp: the cast cannot truncate.
            *slot = (v * 255.0).round() as u8;
            len += 1;
        }
        Context { len, bytes }
    }

    /// Number of features (the bias not counted).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector the math sees: `[1, features…]`, `len() + 1` values.
    pub fn vector(&self) -> Vec<f64> {
        let features = self
            .bytes
            .iter()
            .take(self.len())
            .map(|&b| f64::from(b) / 255.0);
        core::iter::once(1.0).chain(features).collect()
    }

    /// Two hex digits per feature, as a decision token carries it.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(self.bytes.get(..self.len()).unwrap_or_default())
    }

    /// The inverse of [`to_hex`](Self::to_hex): `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Context> {
        if s.len() % 2 != 0 || s.len() / 2 > MAX_FEATURES || !s.is_ascii() {
            return None;
        }
        let decoded = crate::hex::decode(s)?;
        let mut bytes = [0u8; MAX_FEATURES];
        bytes
            .iter_mut()
            .zip(&decoded)
            .for_each(|(slot, b)| *slot = *b);
        let len = u8::try_from(decoded.len()).ok()?;
        Some(Context { len, bytes })
    }
}

impl crate::json::ToJson for Context {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::json::write::string(out, &self.to_hex());
    }
}

/// Why a JSON context was refused.
const NOT_A_CONTEXT: &str = "invalid value: a context is hex, a byte a feature";

impl crate::json::read::FromText for Context {
    fn read(p: &mut crate::json::read::Parser<'_>) -> Result<Self, crate::json::read::Error> {
        let hex = String::read(p)?;
        Context::from_hex(&hex).ok_or_else(|| crate::json::read::Error::custom(NOT_A_CONTEXT))
    }
}

// The same form through serde, for the tests that compare the hand-written reader with it.
#[cfg(test)]
impl serde::Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
impl<'de> serde::Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        Context::from_hex(&hex).ok_or_else(|| serde::de::Error::custom(NOT_A_CONTEXT))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn features_parse_and_print_back() {
        for s in [
            "prompt_tokens",
            "max_tokens",
            "tools",
            "vision",
            "json_mode",
            "stream",
            "tenant:gold",
            "path:/v1/embeddings",
        ] {
            assert_eq!(Feature::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "tenant:", "path:v1", "prompt", "colour:red"] {
            assert_eq!(Feature::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_are_normalised_and_quantised() {
        assert_eq!(tokens(0), 0.0);
        assert!((tokens(1) - 1.0 / 17.0).abs() < 1e-12);
        assert_eq!(tokens(u64::MAX), 1.0);
        let features: Vec<Feature> = ["prompt_tokens", "max_tokens", "tools", "tenant:gold"]
            .iter()
            .map(|s| Feature::parse(s).unwrap())
            .collect();
        let facts = Facts {
            prompt_tokens: 255, // log2(256) / 17 = 8/17 → byte 120
            tools: true,
            tenant: Some("gold"),
            ..Facts::default()
        };
        let c = Context::of(&features, &facts);
        assert_eq!(c.to_hex(), "7800ffff");
        let v = c.vector();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0], 1.0);
        assert!((v[1] - 120.0 / 255.0).abs() < 1e-12 && (v[1] - 8.0 / 17.0).abs() < 0.002);
        assert_eq!(&v[2..], &[0.0, 1.0, 1.0]);
        assert_eq!(Context::from_hex("7800ffff"), Some(c));
        let other = Facts {
            tenant: Some("free"),
            ..facts
        };
        assert_eq!(Context::of(&features, &other).to_hex(), "7800ff00");
    }

    #[test]
    fn hex_is_checked() {
        assert_eq!(Context::from_hex("").map(|c| c.len()), Some(0));
        for bad in ["0", "zz", "é1", "000000000000000000"] {
            assert_eq!(Context::from_hex(bad), None, "{bad}");
        }
        let c = Context::from_values(&[f64::NAN, -1.0, 2.0, 0.5]);
        assert_eq!(c.to_hex(), "0000ff80");
    }
}
