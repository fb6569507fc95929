//! The pages a browser gets when portero refuses a navigation: small,
//! accessible HTML instead of the JSON body an API client gets, with the
//! same status code and headers. Nothing private on them (no reason
//! detail, no user, no session), never cached, no script.

use crate::config::{Config, ErrorPages};
use crate::http::LocalResponse;
use crate::reject::{safe_return_path, Reason};

/// The built-in document. Its placeholders are the ones an operator's
/// template may use (`config::PAGE_PLACEHOLDERS`); every value is escaped.
const BUILT_IN: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{title}}</title>
<style>
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1b1f24}
main{max-width:32rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
a{color:#0a4fc4;font-weight:600}
a:focus{outline:3px solid #0a4fc4;outline-offset:2px}
.status{margin-top:2rem;color:#4f5661;font-size:.875rem}
</style>
<link rel="stylesheet" href="{{stylesheet_url}}">
</head>
<body>
<main>
<h1>{{title}}</h1>
<p>{{message}}</p>
<p><a href="{{action_url}}">{{action_label}}</a></p>
<p class="status">Error {{status}}</p>
</main>
</body>
</html>
"#;

/// The built-in document's stylesheet line, dropped when none is configured.
const BUILT_IN_STYLESHEET: &str = "<link rel=\"stylesheet\" href=\"{{stylesheet_url}}\">\n";

/// What one page says.
struct PageText {
    title: &'static str,
    message: &'static str,
    action_label: &'static str,
    action_url: String,
}

/// `json` (the refusal as an API client gets it) as the page a browser
/// gets: same status, same headers but the body's type, and a body that
/// says what happened and what to do. `sign_in_url`: where a signed-out
/// user signs in (the login redirect's target), if portero knows it;
/// `path`: the path the browser asked for.
pub fn page(
    config: &Config,
    reason: Reason,
    json: LocalResponse,
    sign_in_url: Option<String>,
    path: &str,
) -> LocalResponse {
    let pages = &config.error_pages;
    let text = text_for(reason, json.status, sign_in_url, path);
    let status = json.status.to_string();
    let stylesheet_url = pages.stylesheet_url.clone().unwrap_or_default();
    let body = render(
        &template(pages),
        &[
            ("status", status.as_str()),
            ("title", text.title),
            ("message", text.message),
            ("action_url", text.action_url.as_str()),
            ("action_label", text.action_label),
            ("stylesheet_url", stylesheet_url.as_str()),
        ],
    );
    let mut headers: Vec<(String, String)> = json
        .headers
        .into_iter()
        .filter(|(name, _)| name != "content-type")
        .collect();
    headers.push(("content-type".into(), "text/html; charset=utf-8".into()));
    headers.push((
        "content-security-policy".into(),
        content_security_policy(pages),
    ));
    headers.push(("x-content-type-options".into(), "nosniff".into()));
    headers.push(("referrer-policy".into(), "no-referrer".into()));
    LocalResponse {
        status: json.status,
        headers,
        body: body.into_bytes(),
    }
}

/// A page of portero's own outside a refusal (the sidecar's sign-in
/// steps), in the built-in look with no stylesheet: `title`, `message` and
/// one link, every value escaped; never cached, no script.
pub fn built_in_page(
    status: u32,
    title: &str,
    message: &str,
    action_label: &str,
    action_url: &str,
) -> LocalResponse {
    let pages = ErrorPages {
        enabled: true,
        stylesheet_url: None,
        template: None,
    };
    let status_text = status.to_string();
    let body = render(
        &template(&pages),
        &[
            ("status", status_text.as_str()),
            ("title", title),
            ("message", message),
            ("action_url", action_url),
            ("action_label", action_label),
        ],
    );
    LocalResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            (
                "content-security-policy".into(),
                content_security_policy(&pages),
            ),
            ("x-content-type-options".into(), "nosniff".into()),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: body.into_bytes(),
    }
}

/// The sign-in callback's answer: it carries the new session (the filter
/// seals the cookie from its header) and sends the browser on to
/// `return_to` from this site itself, with a `refresh`. A redirect would
/// not do: a `SameSite=Strict` cookie is not sent on a redirect chain that
/// another site (the provider) started, so the page after it would look
/// signed out. `return_to` must be a safe path (`safe_return_path`).
pub fn signed_in_page(return_to: &str) -> LocalResponse {
    let mut page = built_in_page(
        200,
        "Signed in",
        "You are signed in. Continuing to your page…",
        "Continue",
        return_to,
    );
    let refresh = render(
        "<meta http-equiv=\"refresh\" content=\"0;url={{url}}\">\n",
        &[("url", return_to)],
    );
    let html = String::from_utf8_lossy(&page.body).replacen(
        "<meta charset=\"utf-8\">\n",
        &format!("<meta charset=\"utf-8\">\n{refresh}"),
        1,
    );
    page.body = html.into_bytes();
    page
}

fn text_for(reason: Reason, status: u32, sign_in_url: Option<String>, path: &str) -> PageText {
    let home = || "/".to_string();
    match (status, reason) {
        (503, _) => PageText {
            title: "Try again in a moment",
            message: "The service is briefly unavailable. Nothing was lost: \
                      try again in a moment.",
            action_label: "Try again",
            action_url: safe_return_path(path).map_or_else(home, str::to_string),
        },
        (403, Reason::CrossSiteRequest) => PageText {
            title: "Request refused",
            message: "This request came from another site, so it was refused to protect \
                      your account. Go back to the site and try again from there.",
            action_label: "Go to the home page",
            action_url: home(),
        },
        (403, _) => PageText {
            title: "You don't have access to this page",
            message: "You are signed in, but your account is not allowed to open this \
                      page. If you need it, ask your administrator for access.",
            action_label: "Go to the home page",
            action_url: home(),
        },
        (400, _) => PageText {
            title: "This address can't be opened",
            message: "The address is not valid. Check it and try again.",
            action_label: "Go to the home page",
            action_url: home(),
        },
        (_, reason) => {
            let (title, message) = if reason == Reason::NoCredentials {
                (
                    "Sign in to continue",
                    "You need to be signed in to open this page.",
                )
            } else {
                (
                    "You're signed out",
                    "Your session has ended. Sign in again to continue.",
                )
            };
            let (action_label, action_url) = match sign_in_url {
                Some(url) => ("Sign in", url),
                None => ("Go to the home page", home()),
            };
            PageText {
                title,
                message,
                action_label,
                action_url,
            }
        }
    }
}

fn template(pages: &ErrorPages) -> String {
    match (&pages.template, &pages.stylesheet_url) {
        (Some(own), _) => own.clone(),
        (None, Some(_)) => BUILT_IN.to_string(),
        (None, None) => BUILT_IN.replace(BUILT_IN_STYLESHEET, ""),
    }
}

/// Styles only from the page itself and the configured stylesheet's
/// origin; images from the site; no script, no frame, no form.
fn content_security_policy(pages: &ErrorPages) -> String {
    let stylesheet_source = match pages.stylesheet_url.as_deref() {
        Some(url) => match url.strip_prefix("https://") {
            Some(rest) => {
                let host = rest.split(['/', '?']).next().unwrap_or_default();
                format!(" https://{host}")
            }
            None => " 'self'".to_string(),
        },
        None => String::new(),
    };
    let style_src = format!("style-src 'unsafe-inline'{stylesheet_source}");
    format!("default-src 'none'; {style_src}; {CSP_REST}")
}

/// The page's policy past its styles.
const CSP_REST: &str =
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Fills `{{name}}` placeholders with escaped values; an unknown name
/// (the validated templates have none) becomes nothing.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some((before, after)) = rest.split_once("{{") {
        out.push_str(before);
        let Some((name, tail)) = after.split_once("}}") else {
            out.push_str("{{");
            rest = after;
            continue;
        };
        let name = name.trim();
        if let Some((_, value)) = values.iter().find(|(n, _)| *n == name) {
            push_escaped(&mut out, value);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_unknown_names_vanish() {
        let html = render(
            "<a href=\"{{ url }}\">{{label}}</a>{{nope}}{{",
            &[("url", "/x?a=1&b=\"2\""), ("label", "<script>'")],
        );
        assert_eq!(
            html,
            "<a href=\"/x?a=1&amp;b=&quot;2&quot;\">&lt;script&gt;&#39;</a>{{"
        );
    }

    #[test]
    fn the_signed_in_page_refreshes_to_the_escaped_return_path() {
        let page = signed_in_page("/a?b=1&c=\"x\"");
        let html = String::from_utf8(page.body).unwrap();
        assert_eq!(page.status, 200);
        assert!(html.contains(
            "<meta http-equiv=\"refresh\" content=\"0;url=/a?b=1&amp;c=&quot;x&quot;\">"
        ));
        assert!(html.contains("href=\"/a?b=1&amp;c=&quot;x&quot;\""));
    }

    #[test]
    fn the_built_in_page_links_a_stylesheet_only_when_one_is_configured() {
        let mut pages = ErrorPages {
            enabled: true,
            stylesheet_url: None,
            template: None,
        };
        assert!(!template(&pages).contains("<link"));
        assert!(!content_security_policy(&pages).contains("https://"));
        pages.stylesheet_url = Some("https://cdn.example/brand/pages.css".into());
        assert!(template(&pages).contains("<link rel=\"stylesheet\""));
        assert!(content_security_policy(&pages)
            .contains("style-src 'unsafe-inline' https://cdn.example;"));
        pages.stylesheet_url = Some("/assets/pages.css".into());
        assert!(content_security_policy(&pages).contains("style-src 'unsafe-inline' 'self';"));
    }
}
