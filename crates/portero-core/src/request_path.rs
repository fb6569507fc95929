//! The path a route's policy is decided on: the one the upstream will route.
//!
//! Envoy normalises the path before the filter sees it (`normalize_path`,
//! `merge_slashes`, escaped slashes), but a proxy asking forward auth sends
//! the raw request URI (nginx's `$request_uri`, Traefik's and Caddy's
//! `X-Forwarded-Uri`), and an app behind it decodes and resolves it again:
//! `/%61dmin/x` and `/public/../admin/x` are `/admin/x` to the upstream. So
//! the policy is looked up on the path normalised as RFC 3986 and the
//! proxies do it, and anything two parties could read differently is
//! refused rather than guessed.

/// Why a path is refused: it has no single reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbiguousPath {
    /// Not `/`-rooted.
    NotAbsolute,
    /// A byte that is not printable ASCII (control, space, non-UTF-8 …).
    Unprintable,
    /// `\`: a separator to some servers, a name byte to others.
    Backslash,
    /// `%2F`, `%5C` or `%00`: decoded, a separator or an end to some
    /// servers, a name byte to others.
    EncodedSeparator,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `..` above the root.
    AboveRoot,
}

impl AmbiguousPath {
    pub fn as_str(self) -> &'static str {
        match self {
            AmbiguousPath::NotAbsolute => "path not absolute",
            AmbiguousPath::Unprintable => "path has an unprintable byte",
            AmbiguousPath::Backslash => "path has a backslash",
            AmbiguousPath::EncodedSeparator => "path has an encoded / \\ or NUL",
            AmbiguousPath::BadEscape => "path has a malformed percent escape",
            AmbiguousPath::AboveRoot => "path climbs above the root",
        }
    }
}

/// The path of `raw` (a request target, `?query` ignored), normalised:
/// unreserved characters percent-decoded (other escapes kept, hex in upper
/// case), `//` merged, `.` and `..` segments removed.
pub fn normalized_path(raw: &[u8]) -> Result<String, AmbiguousPath> {
    let path = raw
        .iter()
        .position(|&b| b == b'?')
        .map_or(raw, |end| raw.get(..end).unwrap_or_default());
    if path.first() != Some(&b'/') {
        return Err(AmbiguousPath::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = decoded.as_str();
    // `rest` starts with '/'; each piece after it is one segment.
    let mut ends_in_directory = false;
    while let Some(after_slash) = rest.strip_prefix('/') {
        let (segment, tail) = after_slash
            .find('/')
            .map_or((after_slash, ""), |at| after_slash.split_at(at));
        rest = tail;
        ends_in_directory = tail.is_empty() && matches!(segment, "" | "." | "..");
        match segment {
            // Merged slashes, and `.`.
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(AmbiguousPath::AboveRoot);
                }
            }
            name => segments.push(name),
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if segments.is_empty() || ends_in_directory {
        normalized.push('/');
    }
    Ok(normalized)
}

/// Percent-escapes of unreserved characters decoded, the rest kept with
/// upper-case hex; separators in disguise refused.
fn decode_unreserved(path: &[u8]) -> Result<String, AmbiguousPath> {
    let mut out = String::with_capacity(path.len());
    let mut bytes = path.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => return Err(AmbiguousPath::Backslash),
            b'%' => {
                let (Some(hi), Some(lo)) = (bytes.next(), bytes.next()) else {
                    return Err(AmbiguousPath::BadEscape);
                };
                let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
                    return Err(AmbiguousPath::BadEscape);
                };
                let value = h * 16 + l;
                match value {
                    b'/' | b'\\' | 0 => return Err(AmbiguousPath::EncodedSeparator),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    _ => {
                        // Upper-case hex, as RFC 3986 6.2.2.1 normalises it.
                        out.push('%');
                        out.push(hi.to_ascii_uppercase().into());
                        out.push(lo.to_ascii_uppercase().into());
                    }
                }
            }
            0x21..=0x7e => out.push(char::from(b)),
            _ => return Err(AmbiguousPath::Unprintable),
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, AmbiguousPath> {
        normalized_path(raw.as_bytes())
    }

    #[test]
    fn what_the_upstream_routes_is_what_the_policy_sees() {
        for (raw, want) in [
            ("/admin/overview", "/admin/overview"),
            ("/%61dmin/overview", "/admin/overview"),
            ("/%41DMIN/x", "/ADMIN/x"),
            ("//admin/overview", "/admin/overview"),
            ("/x/../admin/overview", "/admin/overview"),
            ("/./admin/./overview", "/admin/overview"),
            ("/public/%2E%2E/admin/overview", "/admin/overview"),
            ("/public/../admin/overview?x=/public/", "/admin/overview"),
            ("/public/../me", "/me"),
            ("/", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/", "/a/"),
            ("/a%20b", "/a%20b"),
            ("/a%7e%3a", "/a~%3A"),
            ("/%2e", "/"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn paths_without_one_reading_are_refused() {
        for (raw, why) in [
            ("admin", AmbiguousPath::NotAbsolute),
            ("", AmbiguousPath::NotAbsolute),
            ("/admin%2Foverview", AmbiguousPath::EncodedSeparator),
            ("/admin%2foverview", AmbiguousPath::EncodedSeparator),
            ("/admin%5Coverview", AmbiguousPath::EncodedSeparator),
            ("/admin%00", AmbiguousPath::EncodedSeparator),
            ("/public\\..\\admin", AmbiguousPath::Backslash),
            ("/a%2", AmbiguousPath::BadEscape),
            ("/a%zz", AmbiguousPath::BadEscape),
            ("/..", AmbiguousPath::AboveRoot),
            ("/%2e%2e/admin", AmbiguousPath::AboveRoot),
            ("/a/../../admin", AmbiguousPath::AboveRoot),
            ("/a b", AmbiguousPath::Unprintable),
        ] {
            assert_eq!(norm(raw), Err(why), "{raw}");
        }
        assert_eq!(
            normalized_path(b"/adm\xffin"),
            Err(AmbiguousPath::Unprintable)
        );
        assert_eq!(
            normalized_path(b"/adm\x00in"),
            Err(AmbiguousPath::Unprintable)
        );
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        let mut rng: u64 = 0x5eed_0019;
        let alphabet = b"/.%2eEfF0a_-~?";
        for _ in 0..20_000 {
            let mut raw = vec![b'/'];
            for _ in 0..(rng % 12) {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                raw.push(alphabet[(rng >> 33) as usize % alphabet.len()]);
            }
            if let Ok(once) = normalized_path(&raw) {
                assert_eq!(
                    normalized_path(once.as_bytes()),
                    Ok(once.clone()),
                    "{raw:?}"
                );
            }
        }
    }
}
