//! The resources and actions of the API: status, partners, transfers, alerts, certificates.
//! Each handler passes its input to [`Operations`](oftp_gateway::control::Operations) and
//! its answer back as JSON.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use oftp_gateway::PartnerState;
use oftp_gateway::control::{
    AlertView, PartnerCountersView, StatusView, TransferDetailView, TransferId, TransferPage,
    TransferQuery, TransferView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery, configured_partner, ops_error};
use crate::auth::{AdminAccess, ApiError, ReadAccess};
use crate::state::{AppState, PartnerInfo};

/// A configured partner: its configuration without secrets and its call state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PartnerView {
    /// Its configuration (no password, no key password).
    #[serde(flatten)]
    pub info: PartnerInfo,
    /// Its call state in the running gateway (`None` while the gateway does not know it yet,
    /// just after a reload).
    pub state: Option<PartnerState>,
    /// Files and octets exchanged with it over all time (`None` = none recorded yet).
    pub counters: Option<PartnerCountersView>,
}

/// `POST /api/v1/partners/{name}/call` accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallAccepted {
    /// The partner called.
    pub partner: String,
}

/// `GET /api/v1/alerts` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `true`: the newest alerts, acknowledged or not; else the open ones.
    pub all: bool,
}

/// A certificate in use, ours or a partner's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// The partner it belongs to; `null` = ours.
    pub partner: Option<String>,
    /// What it is used for (`signing`, `encryption`, `TLS client`, ...).
    pub purpose: String,
    /// Its subject's distinguished name.
    pub subject: String,
    /// Its issuer's distinguished name.
    pub issuer: String,
    /// Its serial number, hex.
    pub serial: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
    /// Whole days until then (negative once expired).
    pub days_left: i64,
}

/// The daemon, its partners' call state, the queue by state and the open alerts.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = StatusView), (status = 401), (status = 503)))]
pub async fn status(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<StatusView>, ApiError> {
    state.ctx().ops.status().await.map(Json).map_err(ops_error)
}

/// `infos` with their call state and counters.
async fn partner_views(
    state: &AppState,
    infos: Vec<PartnerInfo>,
) -> Result<Vec<PartnerView>, ApiError> {
    let running = state.ctx().runtime.partners();
    let counters = state
        .ctx()
        .ops
        .partner_counters()
        .await
        .map_err(ops_error)?;
    Ok(infos
        .into_iter()
        .map(|info| PartnerView {
            state: running.iter().find(|s| s.name == info.name).cloned(),
            counters: counters.iter().find(|c| c.partner == info.name).cloned(),
            info,
        })
        .collect())
}

/// The configured partners, in configuration order.
#[utoipa::path(get, path = "/api/v1/partners", tag = "partners",
    responses((status = 200, body = Vec<PartnerView>), (status = 401)))]
pub async fn partners(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<Vec<PartnerView>>, ApiError> {
    partner_views(&state, state.partners()).await.map(Json)
}

/// One partner.
#[utoipa::path(get, path = "/api/v1/partners/{name}", tag = "partners",
    params(("name" = String, Path, description = "The partner's configured name")),
    responses((status = 200, body = PartnerView), (status = 401), (status = 404)))]
pub async fn partner(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PartnerView>, ApiError> {
    let info = configured_partner(&state, &name)?;
    let mut views = partner_views(&state, vec![info]).await?;
    Ok(Json(views.remove(0)))
}

/// Calls a partner now (at once when a session slot is free, else as soon as one is).
#[utoipa::path(post, path = "/api/v1/partners/{name}/call", tag = "partners",
    params(("name" = String, Path, description = "The partner's configured name")),
    responses((status = 202, body = CallAccepted), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "the partner has no address: it calls us"),
        (status = 503)))]
pub async fn call(
    AdminAccess(who): AdminAccess,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<CallAccepted>), ApiError> {
    state.ctx().ops.call(&name).map_err(ops_error)?;
    tracing::info!(partner = %name, by = %who.name, "call requested over the API");
    Ok((StatusCode::ACCEPTED, Json(CallAccepted { partner: name })))
}

/// The transfers of both directions that match the query, newest first, a page at a time
/// (`next_cursor` of a page is the `cursor` of the next).
#[utoipa::path(get, path = "/api/v1/transfers", tag = "transfers",
    params(TransferQuery),
    responses((status = 200, body = TransferPage), (status = 400), (status = 401)))]
pub async fn transfers(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TransferQuery>,
) -> Result<Json<TransferPage>, ApiError> {
    state
        .ctx()
        .ops
        .transfer_page(query)
        .await
        .map(Json)
        .map_err(ops_error)
}

/// One transfer with every change of its state and the sessions that moved it.
#[utoipa::path(get, path = "/api/v1/transfers/{id}", tag = "transfers",
    params(("id" = String, Path, description = "The transfer's id: `42` (sent) or `in-42` (received)")),
    responses((status = 200, body = TransferDetailView), (status = 400), (status = 401),
        (status = 404)))]
pub async fn transfer(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TransferDetailView>, ApiError> {
    let id: TransferId = id.parse().map_err(ops_error)?;
    state
        .ctx()
        .ops
        .transfer_detail(id)
        .await
        .map(Json)
        .map_err(ops_error)
}

/// The queue row a retry or cancel names: a sent file's id; a received file (`in-42`) has no
/// queue row to act on.
fn queue_row(id: &str, action: &str) -> Result<i64, ApiError> {
    match id.parse::<TransferId>().map_err(ops_error)? {
        TransferId::Out(row) => Ok(row),
        TransferId::In(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            format!(
                "transfer {id} is a received file; only a file we send can be {action}ed \
                 (ask the partner to send it again)"
            ),
        )),
    }
}

/// Queues a failed, rejected or not delivered file again, due now.
#[utoipa::path(post, path = "/api/v1/transfers/{id}/retry", tag = "transfers",
    params(("id" = String, Path, description = "A sent file's transfer id (`42`)")),
    responses((status = 200, body = TransferView), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "its state does not allow it, or it is a received file"),
        (status = 503)))]
pub async fn retry(
    AdminAccess(who): AdminAccess,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TransferView>, ApiError> {
    let id = queue_row(&id, "retry")?;
    let row = state.ctx().ops.retry(id).await.map_err(ops_error)?;
    tracing::info!(transfer = id, by = %who.name, "transfer retried over the API");
    Ok(Json(row))
}

/// Cancels a queued, failed, rejected or not delivered file.
#[utoipa::path(post, path = "/api/v1/transfers/{id}/cancel", tag = "transfers",
    params(("id" = String, Path, description = "A sent file's transfer id (`42`)")),
    responses((status = 200, body = TransferView), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "its state does not allow it, or it is a received file"),
        (status = 503)))]
pub async fn cancel(
    AdminAccess(who): AdminAccess,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TransferView>, ApiError> {
    let id = queue_row(&id, "cancel")?;
    let row = state.ctx().ops.cancel(id).await.map_err(ops_error)?;
    tracing::info!(transfer = id, by = %who.name, "transfer cancelled over the API");
    Ok(Json(row))
}

/// The open alerts, oldest first; with `all=true` the newest alerts, acknowledged or not.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Vec<AlertView>), (status = 400), (status = 401)))]
pub async fn alerts(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    state
        .ctx()
        .ops
        .alerts(query.all)
        .await
        .map(Json)
        .map_err(ops_error)
}

/// Acknowledges an alert (again: keeps the first time).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = i64, Path, description = "The alert's id")),
    responses((status = 200, body = AlertView), (status = 401), (status = 403),
        (status = 404), (status = 503)))]
pub async fn acknowledge(
    AdminAccess(who): AdminAccess,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AlertView>, ApiError> {
    let alert = state.ctx().ops.acknowledge(id).await.map_err(ops_error)?;
    tracing::info!(alert = id, by = %who.name, "alert acknowledged over the API");
    Ok(Json(alert))
}

/// Our certificates and the partners', with their expiry.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates",
    responses((status = 200, body = Vec<CertificateView>), (status = 401)))]
pub async fn certificates(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
) -> Json<Vec<CertificateView>> {
    let now = SystemTime::now();
    Json(
        (state.ctx().certificates)()
            .into_iter()
            .map(|w| certificate_view(w, now))
            .collect(),
    )
}

fn certificate_view(
    w: oftp_gateway::alerts::watchdog::WatchedCert,
    now: SystemTime,
) -> CertificateView {
    let not_after = DateTime::<Utc>::from(w.cert.not_after());
    CertificateView {
        partner: w.partner,
        purpose: w.purpose.to_owned(),
        subject: w.cert.subject().to_owned(),
        issuer: w.cert.issuer().to_owned(),
        serial: w.cert.serial_number(),
        days_left: (not_after - DateTime::<Utc>::from(now))
            .num_seconds()
            .div_euclid(86_400),
        not_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_counts_whole_days_and_goes_negative_after_expiry() {
        let pki = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = oftp_security::Certificate::from_der(pki.cert.der()).unwrap();
        let not_after = cert.not_after();
        let watched = |cert| oftp_gateway::alerts::watchdog::WatchedCert {
            partner: Some("p".into()),
            purpose: "signing",
            cert,
        };
        let day = std::time::Duration::from_secs(86_400);
        let v = certificate_view(watched(cert.clone()), not_after - day * 3 - day / 2);
        assert_eq!(v.days_left, 3);
        let v = certificate_view(watched(cert.clone()), not_after + day / 2);
        assert_eq!(v.days_left, -1);
        assert_eq!(v.serial, cert.serial_number());
        assert_eq!(v.partner.as_deref(), Some("p"));
    }
}
