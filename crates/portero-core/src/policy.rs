//! Session policy: what a route demands (a session or not, which roles), and
//! whether the client still looks like the one that logged in (binding).
//!
//! The plugin-config forms of both live here too, next to what they become,
//! so a field's parsing, validation and meaning are read in one place.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::error::{err, ConfigError};

// ── per-route policy ────────────────────────────────────────────────────

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

// ── session binding ─────────────────────────────────────────────────────

/// What to do when a bound field differs from the one recorded at login
/// (`"off"`, `"log"`, `"reject"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MismatchPolicy {
    /// Don't compare.
    Off,
    /// Count, log, and tell the upstream (header) so it can ask for step-up.
    Log,
    /// Refuse the request (401).
    Reject,
}

/// How the client IP is compared with the one recorded at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpCompare {
    Exact,
    /// Same network: the first `v4` bits of an IPv4 address, `v6` of an IPv6.
    Prefix {
        v4: u8,
        v6: u8,
    },
}

/// A bound field of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingField {
    Ip,
    UserAgent,
}

impl BindingField {
    pub fn name(self) -> &'static str {
        match self {
            BindingField::Ip => "ip",
            BindingField::UserAgent => "user_agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingConfig {
    pub ip: IpCompare,
    pub ip_policy: MismatchPolicy,
    pub user_agent_policy: MismatchPolicy,
    /// On `Reject`, also end the session (a stolen cookie dies with it).
    pub end_session_on_reject: bool,
}

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            ip: IpCompare::Prefix { v4: 24, v6: 64 },
            ip_policy: MismatchPolicy::Log,
            user_agent_policy: MismatchPolicy::Log,
            end_session_on_reject: true,
        }
    }
}

/// A bound field that differs, with what the config says to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub field: BindingField,
    pub policy: MismatchPolicy,
}

impl BindingConfig {
    /// The fields of the request that differ from the session's record. A
    /// field the session did not record (empty) cannot be compared and is
    /// not reported; an unparseable address on either side is a mismatch.
    pub fn mismatches(
        &self,
        recorded_ip: &str,
        recorded_user_agent: &str,
        client_ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Vec<Mismatch> {
        let mut found = Vec::new();
        if self.ip_policy != MismatchPolicy::Off
            && !recorded_ip.is_empty()
            && !self.same_network(recorded_ip, client_ip.unwrap_or_default())
        {
            found.push(Mismatch {
                field: BindingField::Ip,
                policy: self.ip_policy,
            });
        }
        if self.user_agent_policy != MismatchPolicy::Off
            && !recorded_user_agent.is_empty()
            && recorded_user_agent != user_agent.unwrap_or_default()
        {
            found.push(Mismatch {
                field: BindingField::UserAgent,
                policy: self.user_agent_policy,
            });
        }
        found
    }

    fn same_network(&self, recorded: &str, client: &str) -> bool {
        let (Ok(recorded), Ok(client)) = (recorded.parse::<IpAddr>(), client.parse::<IpAddr>())
        else {
            return false;
        };
        // An IPv4 client seen through an IPv6 socket is the same client.
        let (recorded, client) = (recorded.to_canonical(), client.to_canonical());
        match self.ip {
            IpCompare::Exact => recorded == client,
            IpCompare::Prefix { v4, v6 } => match (recorded, client) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    prefix_eq(u32::from(a).into(), u32::from(b).into(), 32, v4)
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(a.into(), b.into(), 128, v6),
                _ => false,
            },
        }
    }
}

/// Whether the first `len` of `width` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, width: u32, len: u8) -> bool {
    let len = u32::from(len).min(width);
    if len == 0 {
        return true;
    }
    let shift = width - len;
    (a >> shift) == (b >> shift)
}

// The config's form of the binding. Its defaults are `BindingConfig::default()`
// written back in this form, so they are stated once.

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawBinding {
    ip: RawIpBinding,
    user_agent: RawUserAgentBinding,
    on_reject: OnReject,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct RawIpBinding {
    compare: IpCompareMode,
    ipv4_prefix_len: u8,
    ipv6_prefix_len: u8,
    policy: MismatchPolicy,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct RawUserAgentBinding {
    compare: UserAgentCompare,
    policy: MismatchPolicy,
}

#[derive(Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum IpCompareMode {
    Exact,
    Prefix,
    Off,
}

#[derive(Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum UserAgentCompare {
    Exact,
    Off,
}

#[derive(Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum OnReject {
    EndSession,
    KeepSession,
}

impl From<&BindingConfig> for RawBinding {
    fn from(config: &BindingConfig) -> Self {
        // A prefix length stays stated for an exact compare, so turning
        // `compare` to "prefix" alone gives the documented lengths.
        let (compare, v4, v6) = match config.ip {
            IpCompare::Exact => (IpCompareMode::Exact, 24, 64),
            IpCompare::Prefix { v4, v6 } => (IpCompareMode::Prefix, v4, v6),
        };
        Self {
            ip: RawIpBinding {
                compare,
                ipv4_prefix_len: v4,
                ipv6_prefix_len: v6,
                policy: config.ip_policy,
            },
            user_agent: RawUserAgentBinding {
                compare: UserAgentCompare::Exact,
                policy: config.user_agent_policy,
            },
            on_reject: if config.end_session_on_reject {
                OnReject::EndSession
            } else {
                OnReject::KeepSession
            },
        }
    }
}

impl Default for RawBinding {
    fn default() -> Self {
        Self::from(&BindingConfig::default())
    }
}

impl Default for RawIpBinding {
    fn default() -> Self {
        RawBinding::default().ip
    }
}

impl Default for RawUserAgentBinding {
    fn default() -> Self {
        RawBinding::default().user_agent
    }
}

impl Default for OnReject {
    fn default() -> Self {
        RawBinding::default().on_reject
    }
}

impl RawBinding {
    pub(crate) fn validate(self) -> Result<BindingConfig, ConfigError> {
        let ip = match self.ip.compare {
            IpCompareMode::Exact | IpCompareMode::Off => IpCompare::Exact,
            IpCompareMode::Prefix => {
                if !(1..=32).contains(&self.ip.ipv4_prefix_len) {
                    return Err(err("binding.ip.ipv4_prefix_len", "expected 1 to 32"));
                }
                if !(1..=128).contains(&self.ip.ipv6_prefix_len) {
                    return Err(err("binding.ip.ipv6_prefix_len", "expected 1 to 128"));
                }
                IpCompare::Prefix {
                    v4: self.ip.ipv4_prefix_len,
                    v6: self.ip.ipv6_prefix_len,
                }
            }
        };
        let ip_policy = match self.ip.compare {
            IpCompareMode::Off => MismatchPolicy::Off,
            _ => self.ip.policy,
        };
        let user_agent_policy = match self.user_agent.compare {
            UserAgentCompare::Off => MismatchPolicy::Off,
            UserAgentCompare::Exact => self.user_agent.policy,
        };
        Ok(BindingConfig {
            ip,
            ip_policy,
            user_agent_policy,
            end_session_on_reject: matches!(self.on_reject, OnReject::EndSession),
        })
    }
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

    fn binding(ip: IpCompare, ip_policy: MismatchPolicy, ua: MismatchPolicy) -> BindingConfig {
        BindingConfig {
            ip,
            ip_policy,
            user_agent_policy: ua,
            end_session_on_reject: true,
        }
    }

    fn fields(found: &[Mismatch]) -> Vec<BindingField> {
        found.iter().map(|m| m.field).collect()
    }

    #[test]
    fn exact_ip_binding() {
        let b = binding(
            IpCompare::Exact,
            MismatchPolicy::Reject,
            MismatchPolicy::Off,
        );
        assert!(b
            .mismatches("10.0.0.1", "ua", Some("10.0.0.1"), Some("x"))
            .is_empty());
        assert_eq!(
            b.mismatches("10.0.0.1", "ua", Some("10.0.0.2"), None),
            vec![Mismatch {
                field: BindingField::Ip,
                policy: MismatchPolicy::Reject
            }]
        );
        // No client address at all is a mismatch, not a pass.
        assert_eq!(
            fields(&b.mismatches("10.0.0.1", "", None, None)),
            vec![BindingField::Ip]
        );
        // Garbage on either side never matches.
        assert_eq!(
            fields(&b.mismatches("not-an-ip", "", Some("not-an-ip"), None)),
            vec![BindingField::Ip]
        );
        // Nothing recorded: nothing to compare.
        assert!(b.mismatches("", "", Some("10.0.0.9"), None).is_empty());
        // IPv4-mapped IPv6 is the same client.
        assert!(b
            .mismatches("10.0.0.1", "", Some("::ffff:10.0.0.1"), None)
            .is_empty());
    }

    #[test]
    fn prefix_ip_binding() {
        let b = binding(
            IpCompare::Prefix { v4: 24, v6: 64 },
            MismatchPolicy::Log,
            MismatchPolicy::Off,
        );
        assert!(b
            .mismatches("198.51.100.7", "", Some("198.51.100.200"), None)
            .is_empty());
        assert_eq!(
            fields(&b.mismatches("198.51.100.7", "", Some("198.51.101.7"), None)),
            vec![BindingField::Ip]
        );
        assert!(b
            .mismatches("2001:db8:1:2::1", "", Some("2001:db8:1:2:ffff::9"), None)
            .is_empty());
        assert_eq!(
            fields(&b.mismatches("2001:db8:1:2::1", "", Some("2001:db8:1:3::1"), None)),
            vec![BindingField::Ip]
        );
        // Families never match each other.
        assert_eq!(
            fields(&b.mismatches("198.51.100.7", "", Some("2001:db8::1"), None)),
            vec![BindingField::Ip]
        );
        let wide = binding(
            IpCompare::Prefix { v4: 8, v6: 16 },
            MismatchPolicy::Log,
            MismatchPolicy::Off,
        );
        assert!(wide
            .mismatches("10.1.2.3", "", Some("10.200.0.1"), None)
            .is_empty());
        assert!(prefix_eq(0xffff_0000, 0xffff_ffff, 32, 16));
        assert!(!prefix_eq(0xffff_0000, 0xffff_ffff, 32, 32));
    }

    #[test]
    fn user_agent_binding() {
        let b = binding(
            IpCompare::Exact,
            MismatchPolicy::Off,
            MismatchPolicy::Reject,
        );
        assert!(b
            .mismatches("1.2.3.4", "curl/8", Some("9.9.9.9"), Some("curl/8"))
            .is_empty());
        assert_eq!(
            b.mismatches("1.2.3.4", "curl/8", Some("1.2.3.4"), Some("curl/9")),
            vec![Mismatch {
                field: BindingField::UserAgent,
                policy: MismatchPolicy::Reject
            }]
        );
        assert_eq!(
            fields(&b.mismatches("", "curl/8", None, None)),
            vec![BindingField::UserAgent]
        );
    }
}
