//! The wire format of the control channel, version [`VERSION`]: one JSON object per line
//! each way, a request and its response, any number of them on one connection.
//!
//! ```text
//! -> {"v":1,"op":"transfers","state":"failed","limit":20}
//! <- {"v":1,"ok":true,"result":[{"id":7,"partner":"acme",...}]}
//! -> {"v":1,"op":"retry","id":999}
//! <- {"v":1,"ok":false,"error":{"code":"unknown_transfer","message":"no transfer 999; ..."}}
//! ```
//!
//! Operations (`op`) and their results: `status` ([`StatusView`](super::StatusView)),
//! `transfers` with the fields of [`TransferQuery`] (a list of
//! [`TransferView`](super::TransferView)), `transfer_page` with the same fields
//! ([`TransferPage`](super::TransferPage)), `transfer_detail` with `transfer` (`42` or `in-42`:
//! [`TransferDetailView`](super::TransferDetailView)), `transfer`/`retry`/`cancel` with `id`
//! ([`TransferDetailView`](super::TransferDetailView) / [`TransferView`](super::TransferView)),
//! `call` with `partner` (`null`), `alerts` with `all` (a list of
//! [`AlertView`](super::AlertView)), `ack` with `id` ([`AlertView`](super::AlertView)). Error
//! codes are [`OpsError::code`] and `bad_request`, `unsupported_version`. A request line
//! longer than [`MAX_LINE`] closes the connection after a `bad_request`.

use serde::{Deserialize, Serialize};

use super::operations::{OpsError, TransferQuery};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The longest request line accepted, newline included.
pub const MAX_LINE: usize = 64 * 1024;

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// `op` in this build's version.
    pub fn new(op: Op) -> Self {
        Self { v: VERSION, op }
    }
}

/// An operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// The daemon, partners, queue depth, open alerts.
    Status,
    /// Lists transfers of both directions (the rows of a page).
    Transfers(TransferQuery),
    /// A page of transfers with the cursor of the next.
    TransferPage(TransferQuery),
    /// One transfer of either direction (`42` or `in-42`) with its history and sessions.
    TransferDetail {
        /// Its transfer id.
        transfer: String,
    },
    /// One queue row with its history.
    Transfer {
        /// Row id.
        id: i64,
    },
    /// Queues a row again.
    Retry {
        /// Row id.
        id: i64,
    },
    /// Cancels a row.
    Cancel {
        /// Row id.
        id: i64,
    },
    /// Calls a partner now.
    Call {
        /// The configured name.
        partner: String,
    },
    /// Lists alerts.
    Alerts {
        /// Acknowledged ones too.
        #[serde(default)]
        all: bool,
    },
    /// Acknowledges an alert.
    Ack {
        /// Alert id.
        id: i64,
    },
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// Whether the operation was done.
    pub ok: bool,
    /// Its result (when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why not (when not `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
}

impl Response {
    /// A result.
    pub fn ok(result: serde_json::Value) -> Self {
        Self {
            v: VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A refusal.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            v: VERSION,
            ok: false,
            result: None,
            error: Some(ErrorView {
                code: code.to_owned(),
                message: message.into(),
            }),
        }
    }
}

impl From<&OpsError> for Response {
    fn from(e: &OpsError) -> Self {
        Self::error(e.code(), e.to_string())
    }
}

/// A refused operation, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorView {
    /// What kind of refusal ([`OpsError::code`], `bad_request`, `unsupported_version`).
    pub code: String,
    /// For a person: what is wrong and what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_flat_json_object_with_version_and_op() {
        let line = serde_json::to_string(&Request::new(Op::Transfers(TransferQuery {
            state: Some("failed".into()),
            limit: Some(20),
            ..TransferQuery::default()
        })))
        .unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"op":"transfers","partner":null,"state":"failed","since":null,"before_id":null,"limit":20}"#
        );
        let back: Request =
            serde_json::from_str(r#"{"v":1,"op":"retry","id":7}"#).expect("a retry request");
        assert_eq!(back, Request::new(Op::Retry { id: 7 }));
        let alerts: Request = serde_json::from_str(r#"{"v":1,"op":"alerts"}"#).unwrap();
        assert_eq!(
            alerts.op,
            Op::Alerts { all: false },
            "all defaults to false"
        );
    }

    #[test]
    fn the_history_fields_of_a_query_go_on_the_wire_only_when_set() {
        let line = serde_json::to_string(&Request::new(Op::TransferPage(TransferQuery {
            direction: Some("in".into()),
            cursor: Some("in-5-7".into()),
            ..TransferQuery::default()
        })))
        .unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"op":"transfer_page","partner":null,"state":null,"since":null,"before_id":null,"limit":null,"direction":"in","cursor":"in-5-7"}"#
        );
        let back: Request = serde_json::from_str(&line).unwrap();
        assert!(matches!(back.op, Op::TransferPage(q) if q.cursor.as_deref() == Some("in-5-7")));
    }

    #[test]
    fn an_unknown_op_or_field_is_not_a_request() {
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"transfers","colour":1}"#).is_err());
    }
}
