//! Session binding: whether the client still looks like the one that
//! logged in (its IP network, its User-Agent), and what to do when not.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::error::{err, ConfigError};

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
