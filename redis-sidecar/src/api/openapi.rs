//! The API's OpenAPI 3.1 document, generated: the operations come from the
//! handlers' `#[utoipa::path]` attributes as the router collects them
//! (`super::routes`), the bodies from the wire types (`portero_wire`). This
//! file adds what no handler says alone: the credentials, the error answers
//! each operation names, and the document's own description. The document is
//! committed at docs/sidecar-openapi.json (`redis-sidecar openapi` prints it).

use portero_wire::{ErrorBody, SessionVerdict};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    AllOfBuilder, ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
    Type,
};
use utoipa::{Modify, OpenApi as _, ToResponse};

/// The document's parts that come from no handler.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "redis-sidecar",
        description = "portero's session store service: the filter looks sessions up and reads \
the revocation feed with its credential; the apps that log users in start and end sessions \
and manage users with the admin credential.\n\n\
Request bodies are JSON (`content-type: application/json`, any case, parameters allowed), at \
most 64 KiB; unknown fields are refused. Answers are JSON, times Unix seconds. Every error is \
an `ErrorBody`, `{\"error\": \"<code>\", \"message\": \"<text for a human>\"}`; each answer \
below lists the codes it can carry. Besides those: a path no route serves is \
`404 no_such_route`, a served path with another method `405 method_not_allowed`.\n\n\
A 503 is never a verdict on a session: it is store trouble, and the caller retries."
    ),
    servers((url = "http://127.0.0.1:7070", description = "the sidecar's default `--listen`")),
    components(schemas(ErrorBody, SessionVerdict)),
    modifiers(&Credentials, &ErrorAnswers),
    tags(
        (name = "sessions", description = "Logins, the filter's look-up, logouts"),
        (name = "users", description = "A user's standing and sessions (admin)"),
        (name = "revocations", description = "The revocation feed the filters poll"),
        (name = "keys", description = "The public keys of the access tokens"),
        (name = "health", description = "Probes and metrics, without a credential"),
    )
)]
struct ApiDoc;

/// The document before the routes add their operations.
pub(super) fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The API's OpenAPI document.
pub fn openapi() -> OpenApi {
    super::routes().into_openapi()
}

/// The document as committed at docs/sidecar-openapi.json: pretty JSON and a
/// final newline.
pub fn openapi_json() -> String {
    // Serialising these types (maps of strings and values) cannot fail.
    serde_json::to_string_pretty(&openapi()).unwrap_or_default() + "\n"
}

/// The two credentials (`Authorization: Bearer <credential>`).
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "filter",
                "The filter's credential (`--filter-token`): look-ups, the revocation feed, \
                 ending one named session.",
            ),
            (
                "admin",
                "The admin credential (`--admin-token`), held by the apps that log users in: \
                 logins, users, ending sessions.",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// An error answer: an [`ErrorBody`] whose `error` is one of `codes`.
fn error_answer(description: &str, codes: &[&str]) -> RefOr<Response> {
    let error = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("error", error),
        );
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .into()
}

/// Declares the error answers: for each, a [`ToResponse`] type the
/// handlers name (`(status = 401, response = Unauthorized)`), its status
/// and the codes its body can carry. [`ErrorAnswers`] puts them all in the
/// document's `components.responses`.
macro_rules! error_answers {
    ($($name:ident = $status:literal $description:literal [$($code:expr),+ $(,)?];)+) => {
        $(
            #[doc = $description]
            pub(super) struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), error_answer($description, &[$($code),+]))
                }
            }
        )+

        /// Every error answer: its name, status and the codes it carries.
        #[cfg(test)]
        const ERROR_ANSWERS: &[(&str, u16, &[&str])] =
            &[$((stringify!($name), $status, &[$($code),+])),+];

        struct ErrorAnswers;

        impl Modify for ErrorAnswers {
            fn modify(&self, openapi: &mut OpenApi) {
                let components = openapi.components.get_or_insert_with(Default::default);
                $(
                    let (name, answer) = <$name as ToResponse>::response();
                    components.responses.insert(name.to_string(), answer);
                )+
            }
        }
    };
}

error_answers! {
    BadRequest = 400 "A malformed request: invalid JSON, a missing, unknown or malformed field \
        (the message names it), a malformed path segment or query"
        ["bad_request"];
    Unauthorized = 401 "No `Authorization: Bearer` credential, or an unknown one"
        ["unauthorized"];
    WrongRole = 403 "The other role's credential"
        ["forbidden"];
    LoginRefused = 403 "The other role's credential (`forbidden`), or the user is banned \
        (`user_banned`)"
        ["forbidden", "user_banned"];
    SessionRefused = 404 "No usable session: none (or expired), revoked, its user banned, or a \
        rotated-away token presented after its windows. The filter turns these into 401s"
        [
            SessionVerdict::SessionNotFound.code(),
            SessionVerdict::SessionRevoked.code(),
            SessionVerdict::UserBanned.code(),
            SessionVerdict::TokenReplayed.code(),
        ];
    UserNotFound = 404 "A user never seen"
        ["user_not_found"];
    PayloadTooLarge = 413 "A body over 64 KiB"
        ["payload_too_large"];
    UnsupportedMediaType = 415 "A body not declared `application/json`"
        ["unsupported_media_type"];
    InternalError = 500 "A server error (the metrics could not be rendered)"
        ["internal_error"];
    SigningFailed = 500 "The rotated access token could not be signed"
        ["signing_failed"];
    LoginFailed = 500 "The access token could not be signed, or no free session id after \
        three tries (not expected with 256-bit ids)"
        ["signing_failed", "session_id_collision"];
    StoreUnavailable = 503 "Redis down, slow or unreadable"
        ["store_unavailable"];
    StoreTrouble = 503 "Redis down, slow or unreadable, the session's user record missing \
        (`store_unavailable`), or a write replicas did not acknowledge in time \
        (`store_not_replicated`)"
        ["store_unavailable", "store_not_replicated"];
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(&openapi_json()).unwrap()
    }

    /// Each operation names an error answer under that answer's status.
    #[test]
    fn every_error_answer_is_named_under_its_own_status() {
        let statuses: BTreeMap<&str, u16> = ERROR_ANSWERS
            .iter()
            .map(|(name, status, _)| (*name, *status))
            .collect();
        let doc = document();
        let mut named = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, answer) in operation["responses"].as_object().unwrap() {
                    let Some(reference) = answer["$ref"].as_str() else {
                        continue;
                    };
                    let name = reference.strip_prefix("#/components/responses/").unwrap();
                    assert_eq!(
                        statuses[name].to_string(),
                        *status,
                        "{method} {path}: {name} under {status}"
                    );
                    named += 1;
                }
            }
        }
        assert!(named > 20, "{named}");
    }
}
