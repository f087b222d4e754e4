//! Model names and versions carried in inference URL paths.

/// A model named by the path, with the version it pins, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathModel<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
}

/// Recognises KServe v2 / Open Inference Protocol paths
/// (`/v2/models/{name}[/versions/{v}][/infer|/ready|…]`) and TF-Serving paths
/// (`/v1/models/{name}[/versions/{v}][:predict|:classify|:regress|/metadata]`).
pub fn model_from_path(path: &str) -> Option<PathModel<'_>> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/v2/models/") {
        let mut segments = rest.split('/');
        let name = segments.next().filter(|s| !s.is_empty())?;
        let version = match (segments.next(), segments.next()) {
            (Some("versions"), Some(v)) if !v.is_empty() => Some(v),
            _ => None,
        };
        return Some(PathModel { name, version });
    }
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        let end = rest.find(['/', ':']).unwrap_or(rest.len());
        // `end` is a char boundary within `rest`; checked, not `split_at`: no panic path.
        let (name, tail) = rest.split_at_checked(end).unwrap_or((rest, ""));
        if name.is_empty() {
            return None;
        }
        let version = tail.strip_prefix("/versions/").and_then(|v| {
            let v = v.split(['/', ':']).next().unwrap_or_default();
            (!v.is_empty()).then_some(v)
        });
        return Some(PathModel { name, version });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(name: &str, version: Option<&str>) -> Option<PathModel<'static>> {
        Some(PathModel {
            name: Box::leak(name.to_string().into_boxed_str()),
            version: version.map(|v| &*Box::leak(v.to_string().into_boxed_str())),
        })
    }

    #[test]
    fn kserve_v2() {
        assert_eq!(model_from_path("/v2/models/iris/infer"), pm("iris", None));
        assert_eq!(
            model_from_path("/v2/models/iris/versions/v2/infer"),
            pm("iris", Some("v2"))
        );
        assert_eq!(
            model_from_path("/v2/models/iris/ready?x=1"),
            pm("iris", None)
        );
        assert_eq!(model_from_path("/v2/models/iris"), pm("iris", None));
        assert_eq!(model_from_path("/v2/models//infer"), None);
        assert_eq!(
            model_from_path("/v2/models/iris/versions//infer"),
            pm("iris", None)
        );
    }

    #[test]
    fn tf_serving() {
        assert_eq!(model_from_path("/v1/models/half:predict"), pm("half", None));
        assert_eq!(
            model_from_path("/v1/models/half/versions/3:predict"),
            pm("half", Some("3"))
        );
        assert_eq!(
            model_from_path("/v1/models/half/metadata"),
            pm("half", None)
        );
        assert_eq!(model_from_path("/v1/models/half"), pm("half", None));
        assert_eq!(model_from_path("/v1/models/:predict"), None);
    }

    #[test]
    fn others() {
        assert_eq!(model_from_path("/v1/chat/completions"), None);
        assert_eq!(model_from_path("/api/v1.0/predictions"), None);
        assert_eq!(model_from_path(""), None);
        assert_eq!(model_from_path("/v2/models"), None);
    }
}
