//! Checks of what callers send: JSON bodies, and the values that will
//! travel upstream in HTTP headers.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;

/// Parses a JSON body with a clear 400 on failure.
pub(super) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type);
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `content-type: application/json`",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `application/json`, in any case, with or without parameters
/// (RFC 9110 §8.3.1: type and subtype are case-insensitive).
pub(super) fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A value that will travel in an HTTP header to upstreams.
pub(super) fn check_header_safe(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(())
}

/// Roles and permissions travel upstream comma-separated.
pub(super) fn check_names(field: &str, names: &[String]) -> Result<(), ApiError> {
    if names.len() > 64 {
        return Err(ApiError::bad_request(format!("at most 64 `{field}`")));
    }
    for name in names {
        if name.is_empty() || name.contains(',') || name.contains(' ') {
            return Err(ApiError::bad_request(format!(
                "each of `{field}` must be non-empty, without `,` or spaces"
            )));
        }
        check_header_safe(field, name, 128)?;
    }
    Ok(())
}

pub(super) fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    if user_id.is_empty() {
        return Err(ApiError::bad_request("`user_id` is required"));
    }
    check_header_safe("user_id", user_id, 256)
}

#[cfg(test)]
mod media_type_tests {
    #[test]
    fn json_media_type_is_case_insensitive_and_exact() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(super::is_json_media_type(ok), "{ok}");
        }
        for bad in ["application/jsonx", "text/json", "application/json-seq", ""] {
            assert!(!super::is_json_media_type(bad), "{bad}");
        }
    }
}
