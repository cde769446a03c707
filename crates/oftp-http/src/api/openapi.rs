//! `GET /api/openapi.json`: the API's OpenAPI 3.1 document, generated with `utoipa` from the
//! handlers' `#[utoipa::path]` attributes and the views' `ToSchema` derives (the views of
//! `oftp_gateway::control` derive it where they are defined), so it cannot drift from the
//! code. Like every route it needs a token.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{events, resources, upload};
use crate::auth::ReadAccess;

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

/// The document's definition: every handler of [`super::routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "oftp serve HTTP API",
        description = "Watch and drive the OFTP gateway: status, partners, transfers, alerts, \
            certificates, uploads, live events. Every route needs `Authorization: Bearer <token>` \
            (`oftp http token create`); actions need an admin token. Errors are \
            `{\"error\": code, \"message\": text}`."
    ),
    paths(
        resources::status,
        resources::partners,
        resources::partner,
        resources::call,
        upload::upload,
        resources::transfers,
        resources::transfer,
        resources::retry,
        resources::cancel,
        resources::alerts,
        resources::acknowledge,
        resources::certificates,
        events::events,
        document,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The body of every error answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes `ApiError`'s JSON only
pub struct ErrorBody {
    /// A stable name (`unauthorized`, `forbidden`, `unknown_transfer`, `refused`, ...).
    error: String,
    /// What happened and what to do.
    message: String,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "openapi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 401)))]
pub async fn document(ReadAccess(_): ReadAccess) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn every_route_of_the_router_is_in_the_document_and_nothing_else() {
        let doc = ApiDoc::openapi();
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [(Method::GET, &item.get), (Method::POST, &item.post)] {
                if op.is_some() {
                    documented.push((method, path.clone()));
                }
            }
        }
        let mut routed: Vec<_> = super::super::routes()
            .into_iter()
            .map(|(m, p, _)| (m, p.to_owned()))
            .collect();
        let key = |(m, p): &(Method, String)| (p.clone(), m.to_string());
        routed.sort_by_key(key);
        documented.sort_by_key(key);
        assert_eq!(routed, documented);
    }

    #[test]
    fn the_document_names_the_views_and_the_bearer_scheme() {
        let text = serde_json::to_string(&ApiDoc::openapi()).unwrap();
        for name in [
            "TransferView",
            "TransferPage",
            "PartnerView",
            "AlertView",
            "CertificateView",
            "StatusView",
            "\"bearer\"",
            "\"before_id\"",
            "\"cursor\"",
            "SessionView",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
