//! A rule as written: `when` conditions and the `then` action.

use crate::vecmap::VecMap;

use crate::json::Value;

use crate::config::read::{read_struct, At, FromJson};
use crate::config::ConfigError;

#[derive(Debug)]
pub struct RuleDto {
    pub name: String,
    pub when: WhenDto,
    pub then: ThenDto,
}

read_struct!(RuleDto {
    name: req,
    when: or_default,
    then: req,
});

#[derive(Debug, Default)]
pub struct WhenDto {
    pub headers: VecMap<String, HeaderCondDto>,
    pub path_prefix: Option<String>,
    pub method: Option<OneOrMany>,
    pub body: VecMap<String, BodyCondDto>,
    pub time_utc: Option<TimeWindowDto>,
    pub tenant: Option<OneOrMany>,
    pub tier: Option<OneOrMany>,
    /// Any of these detectors fired on the prompt text.
    pub detected: Option<OneOrMany>,
}

read_struct!(WhenDto {
    headers: or_default,
    path_prefix: or_default,
    method: or_default,
    body: or_default,
    time_utc: or_default,
    tenant: or_default,
    tier: or_default,
    detected: or_default,
});

/// `"POST"` or `["GET", "POST"]`.
#[derive(Debug)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl FromJson for OneOrMany {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        if let Value::String(s) = v {
            return Ok(OneOrMany::One(s.clone()));
        }
        Vec::from_json(v, at)
            .map(OneOrMany::Many)
            .map_err(|_| at.error("data did not match any variant of untagged enum OneOrMany"))
    }
}

#[derive(Debug)]
pub struct HeaderCondDto {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub present: Option<bool>,
}

read_struct!(HeaderCondDto {
    exact: or_default,
    prefix: or_default,
    present: or_default,
});

#[derive(Debug)]
pub struct BodyCondDto {
    /// `Some(Value::Null)` when the user wrote `"exact": null`, `None` when absent.
    pub exact: Option<Value>,
    pub one_of: Option<Vec<Value>>,
    pub present: Option<bool>,
    pub gt: Option<f64>,
    pub lt: Option<f64>,
}

read_struct!(BodyCondDto {
    exact: present,
    one_of: or_default,
    present: or_default,
    gt: or_default,
    lt: or_default,
});

#[derive(Debug)]
pub struct TimeWindowDto {
    pub from: String,
    pub to: String,
}

read_struct!(TimeWindowDto { from: req, to: req });

#[derive(Debug, Default)]
pub struct ThenDto {
    pub model: Option<String>,
    pub target: Option<String>,
    pub reply: Option<ReplyDto>,
    pub reject: Option<RejectDto>,
    /// Keep only targets in this region / with all these tags.
    pub restrict: Option<RestrictDto>,
}

read_struct!(ThenDto {
    model: or_default,
    target: or_default,
    reply: or_default,
    reject: or_default,
    restrict: or_default,
});

#[derive(Debug)]
pub struct RestrictDto {
    pub region: Option<String>,
    pub tags: Vec<String>,
}

read_struct!(RestrictDto {
    region: or_default,
    tags: or_default,
});

#[derive(Debug)]
pub struct ReplyDto {
    pub status: u16,
    pub echo: bool,
    /// `Some(Value::Null)` when the user wrote `"body": null`, `None` when absent.
    pub body: Option<Value>,
}

read_struct!(ReplyDto {
    status: or(default_reply_status),
    echo: or_default,
    body: present,
});

fn default_reply_status() -> u16 {
    200
}

#[derive(Debug)]
pub struct RejectDto {
    pub status: u16,
    pub message: String,
}

read_struct!(RejectDto {
    status: req,
    message: req,
});
