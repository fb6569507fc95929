//! Session policy: what a route demands (a session or not, which roles,
//! where a browser signs in), here; and whether the client still looks like
//! the one that logged in, in `binding`.
//!
//! The plugin-config forms of both live beside what they become, so a
//! field's parsing, validation and meaning are read in one place.

mod binding;

pub(crate) use binding::RawBinding;
pub use binding::{BindingConfig, BindingField, IpCompare, Mismatch, MismatchPolicy};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::error::{err, ConfigError};

/// What the filter demands on a route (`"required"`, `"optional"`, `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoutePolicy {
    /// A valid session is required (the default for every route).
    #[default]
    Required,
    /// No credential: the request passes anonymously (identity headers
    /// absent). A credential that is presented must still be valid.
    Optional,
    /// No authentication; identity headers are still stripped, and session
    /// start/end headers from the upstream are still honoured (login, logout).
    Off,
}

/// Roles a route demands of the session's user (from the user record now,
/// not from the login nor any token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRequirement {
    AnyOf(Vec<String>),
    AllOf(Vec<String>),
}

impl RoleRequirement {
    pub fn is_met_by(&self, roles: &[String]) -> bool {
        let has = |wanted: &String| roles.iter().any(|r| r == wanted);
        match self {
            RoleRequirement::AnyOf(wanted) => wanted.iter().any(has),
            RoleRequirement::AllOf(wanted) => wanted.iter().all(has),
        }
    }
}

/// Which requests a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// Envoy's route `name` (the `xds.route_name` property): ties the rule to
    /// the route table, so it follows whatever the route matches.
    RouteName(String),
    /// A path prefix (query string ignored; Envoy has normalised the path).
    PathPrefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub matcher: RouteMatch,
    pub policy: RoutePolicy,
    pub roles: Option<RoleRequirement>,
    /// The route is a sign-in callback (portero's OIDC callback): see
    /// [`RouteDecision::sign_in_callback`].
    pub sign_in_callback: bool,
    /// See [`RouteDecision::login_redirect_url`].
    pub login_redirect_url: Option<String>,
}

/// The rule that governs a request: `Required`, no roles, when none matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision<'a> {
    pub policy: RoutePolicy,
    pub roles: Option<&'a RoleRequirement>,
    /// A session may start here from a cross-site GET: the provider's
    /// redirect back is one, and the upstream (the sidecar's OIDC callback)
    /// defends against login CSRF itself, by the `state` it bound to the
    /// browser's pre-login cookie.
    pub sign_in_callback: bool,
    /// Where a navigation without a session is sent on this route, instead
    /// of `login_redirect.url` (the OIDC start page on some routes, the
    /// app's own login page on others).
    pub login_redirect_url: Option<&'a str>,
}

impl Default for RouteDecision<'_> {
    fn default() -> Self {
        Self {
            policy: RoutePolicy::Required,
            roles: None,
            sign_in_callback: false,
            login_redirect_url: None,
        }
    }
}

/// The rule for a request: a route-name rule wins; else the longest
/// matching path prefix; else the default (`Required`).
pub fn decide<'a>(
    rules: &'a [RouteRule],
    path: &str,
    route_name: Option<&str>,
) -> RouteDecision<'a> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let by_name = route_name.and_then(|name| {
        rules
            .iter()
            .find(|r| matches!(&r.matcher, RouteMatch::RouteName(n) if n == name))
    });
    let rule = by_name.or_else(|| {
        rules
            .iter()
            .filter_map(|r| match &r.matcher {
                RouteMatch::PathPrefix(prefix) if path.starts_with(prefix.as_str()) => {
                    Some((prefix.len(), r))
                }
                _ => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
    });
    rule.map_or_else(RouteDecision::default, |r| RouteDecision {
        policy: r.policy,
        roles: r.roles.as_ref(),
        sign_in_callback: r.sign_in_callback,
        login_redirect_url: r.login_redirect_url.as_deref(),
    })
}

/// Whether any rule needs the route name (read from Envoy only then).
pub fn uses_route_names(rules: &[RouteRule]) -> bool {
    rules
        .iter()
        .any(|r| matches!(r.matcher, RouteMatch::RouteName(_)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    route_name: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    policy: RoutePolicy,
    #[serde(default)]
    roles: Option<RawRoles>,
    /// `true` on the route of portero's OIDC callback (`policy: "off"`): a
    /// session may start there from a cross-site GET navigation, the
    /// provider's redirect back, since the callback checks `state` against
    /// the browser's own pre-login cookie.
    #[serde(default)]
    sign_in_callback: bool,
    /// Where a browser navigation without a session is sent on this route
    /// (a same-site path or an `https://` URL), instead of
    /// `login_redirect.url`; its return parameter is `login_redirect`'s
    /// (`return_to` without one). Only with `policy: "required"`.
    #[serde(default)]
    login_redirect_url: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    any_of: Option<Vec<String>>,
    #[serde(default)]
    all_of: Option<Vec<String>>,
}

impl RawRoute {
    pub(crate) fn validate(self, field: &str) -> Result<RouteRule, ConfigError> {
        let matcher = match (self.route_name, self.path_prefix) {
            (Some(name), None) if !name.is_empty() => RouteMatch::RouteName(name),
            (None, Some(prefix)) if prefix.starts_with('/') => RouteMatch::PathPrefix(prefix),
            (None, Some(_)) => {
                return Err(err(
                    &format!("{field}.path_prefix"),
                    "expected a path starting with `/`",
                ))
            }
            (Some(_), None) => {
                return Err(err(
                    &format!("{field}.route_name"),
                    "expected the `name` of an Envoy route",
                ))
            }
            _ => {
                return Err(err(
                    field,
                    "expected exactly one of `route_name` and `path_prefix`",
                ))
            }
        };
        let policy = self.policy;
        let roles = match self.roles {
            None => None,
            Some(raw) => Some(raw.validate(&format!("{field}.roles"))?),
        };
        if roles.is_some() && policy != RoutePolicy::Required {
            return Err(err(
                &format!("{field}.roles"),
                "roles need `policy: \"required\"` (an anonymous request has no roles)",
            ));
        }
        if self.sign_in_callback && policy != RoutePolicy::Off {
            return Err(err(
                &format!("{field}.sign_in_callback"),
                "a sign-in callback needs `policy: \"off\"` (the browser has no session yet)",
            ));
        }
        if let Some(url) = &self.login_redirect_url {
            if policy != RoutePolicy::Required {
                return Err(err(
                    &format!("{field}.login_redirect_url"),
                    "only a `required` route sends a browser to sign in",
                ));
            }
            if !is_same_site_path_or_https_url(url) || url.contains('#') {
                return Err(err(
                    &format!("{field}.login_redirect_url"),
                    "expected a path like \"/login\" or an absolute \"https://\" URL (no fragment)",
                ));
            }
        }
        Ok(RouteRule {
            matcher,
            policy,
            roles,
            sign_in_callback: self.sign_in_callback,
            login_redirect_url: self.login_redirect_url,
        })
    }
}

impl RawRoles {
    fn validate(self, field: &str) -> Result<RoleRequirement, ConfigError> {
        let (which, roles) = match (&self.any_of, &self.all_of) {
            (Some(roles), None) => ("any_of", roles),
            (None, Some(roles)) => ("all_of", roles),
            _ => {
                return Err(err(
                    field,
                    "expected exactly one of `any_of` and `all_of` (a list of role names)",
                ))
            }
        };
        if roles.is_empty() || roles.iter().any(|r| r.is_empty() || r.contains(',')) {
            return Err(err(
                &format!("{field}.{which}"),
                "expected a non-empty list of role names (no commas)",
            ));
        }
        Ok(match (self.any_of, self.all_of) {
            (Some(roles), _) => RoleRequirement::AnyOf(roles),
            (_, roles) => RoleRequirement::AllOf(roles.unwrap_or_default()),
        })
    }
}

/// A same-site absolute path (not `//host`, not `/\host`) or an absolute
/// `https://` URL, with no blank or control character: where a browser may
/// be sent to sign in.
pub(crate) fn is_same_site_path_or_https_url(url: &str) -> bool {
    let same_site_path = url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\");
    let https_url = url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    (same_site_path || https_url) && !url.bytes().any(|b| b <= b' ' || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(matcher: RouteMatch, policy: RoutePolicy) -> RouteRule {
        RouteRule {
            matcher,
            policy,
            roles: None,
            sign_in_callback: false,
            login_redirect_url: None,
        }
    }

    #[test]
    fn route_name_rule_wins_then_longest_prefix_then_required() {
        let rules = vec![
            rule(RouteMatch::PathPrefix("/a/".into()), RoutePolicy::Off),
            rule(
                RouteMatch::PathPrefix("/a/b/".into()),
                RoutePolicy::Optional,
            ),
            rule(RouteMatch::RouteName("admin".into()), RoutePolicy::Required),
        ];
        assert_eq!(decide(&rules, "/a/x", None).policy, RoutePolicy::Off);
        assert_eq!(
            decide(&rules, "/a/b/x?q=1", None).policy,
            RoutePolicy::Optional
        );
        assert_eq!(
            decide(&rules, "/a/b/x", Some("admin")).policy,
            RoutePolicy::Required
        );
        assert_eq!(
            decide(&rules, "/a/b/x", Some("other")).policy,
            RoutePolicy::Optional
        );
        assert_eq!(decide(&rules, "/z", None), RouteDecision::default());
        // The query string is not part of the path.
        assert_eq!(decide(&rules, "/z?/a/", None).policy, RoutePolicy::Required);
        assert!(uses_route_names(&rules));
    }

    #[test]
    fn roles_any_of_and_all_of() {
        let roles = vec!["dev".to_string(), "ops".to_string()];
        assert!(RoleRequirement::AnyOf(vec!["admin".into(), "dev".into()]).is_met_by(&roles));
        assert!(!RoleRequirement::AnyOf(vec!["admin".into()]).is_met_by(&roles));
        assert!(RoleRequirement::AllOf(vec!["dev".into(), "ops".into()]).is_met_by(&roles));
        assert!(!RoleRequirement::AllOf(vec!["dev".into(), "admin".into()]).is_met_by(&roles));
        assert!(!RoleRequirement::AnyOf(vec!["dev".into()]).is_met_by(&[]));
    }
}
