//! The per-folder message delta endpoint (`mailFolders/{id}/messages/delta`): rounds, pages,
//! tokens and 410 answers. The token store and change computation live in `crate::delta`.

use serde_json::{Value, json};

use super::{Ctx, DEFAULT_PAGE, MAX_PAGE, ok_json, query_error};
use crate::config::FolderKind;
use crate::delta::{self, DeltaParams, Entry, TokenError};
use crate::odata::{self, Filter, OrderBy, Prop, QueryError};
use crate::server::Resp;
use crate::stats::Counter;
use crate::util::lock;

impl Ctx<'_> {
    pub(super) fn delta(&self, f: &str) -> Resp {
        let q = self.r.query_map();
        let lifetime = self.shared.delta_lifetime;
        let prefer_page = self
            .r
            .header("prefer")
            .and_then(odata::prefer_maxpagesize)
            .map(|n| n.clamp(1, MAX_PAGE));
        let folder_idx = {
            let d = lock(&self.mb.data);
            match d.folder_index(f) {
                Some(i) if d.folders[i].kind == FolderKind::Mail => i,
                Some(_) => {
                    return self.err(
                        400,
                        "ErrorInvalidRequest",
                        "Change tracking is not supported for search folders (mailSearchFolder); skip them and sync their source folders.",
                    );
                }
                None => return self.not_found(),
            }
        };
        let base_link = format!("{}{}", self.shared.base_url, self.r.path);
        let gone = |this: &Self| {
            this.shared.stats.bump(Counter::DeltaGone);
            this.err(
                410,
                "syncStateNotFound",
                "The sync state for this delta or skip token was not found: it expired or was invalidated. Discard the token and start a full synchronization with a request without $deltatoken.",
            )
            .with_header("Location", base_link.clone())
        };
        let wrong_folder = |this: &Self| {
            this.err(
                400,
                "BadRequest",
                "The delta or skip token was issued for another folder; use the links returned for this folder.",
            )
        };
        // Resolve the session (existing page or a new round) and the position.
        let (session_id, session, pos) = if let Some(st) = q.get("$skiptoken") {
            let store = lock(&self.mb.delta);
            match store.session(st, folder_idx, lifetime) {
                Ok(x) => x,
                Err(TokenError::Gone) => return gone(self),
                Err(TokenError::WrongFolder) => return wrong_folder(self),
            }
        } else {
            let (params, since, page) = if let Some(dt) = q.get("$deltatoken") {
                let mut store = lock(&self.mb.delta);
                match store.token(dt, folder_idx, lifetime) {
                    Ok((p, seq)) => (p, Some(seq), prefer_page.unwrap_or(DEFAULT_PAGE)),
                    Err(TokenError::Gone) => return gone(self),
                    Err(TokenError::WrongFolder) => return wrong_folder(self),
                }
            } else {
                let parsed = (|| {
                    let filter = match q.get("$filter") {
                        Some(s) => {
                            let f = odata::parse_filter(s)?;
                            odata::check_delta_filter(&f)?;
                            f
                        }
                        None => Filter::default(),
                    };
                    if let Some(o) = q.get("$orderby") {
                        let ob = odata::parse_orderby(o)?;
                        if ob
                            != [OrderBy {
                                prop: Prop::Received,
                                descending: true,
                            }]
                        {
                            return Err(QueryError {
                                code: "BadRequest",
                                message: "A delta query on messages supports only $orderby=receivedDateTime desc.".to_owned(),
                            });
                        }
                    }
                    let top = match q.get("$top") {
                        Some(t) => Some(odata::parse_count("$top", t)?.clamp(1, MAX_PAGE)),
                        None => None,
                    };
                    Ok::<_, QueryError>((filter, self.select(&q)?, top))
                })();
                let (filter, select, top) = match parsed {
                    Ok(x) => x,
                    Err(e) => return query_error(self.r, e),
                };
                (
                    DeltaParams {
                        folder: folder_idx,
                        filter,
                        select,
                    },
                    None,
                    prefer_page.or(top).unwrap_or(DEFAULT_PAGE),
                )
            };
            let (entries, snapshot) = {
                let d = lock(&self.mb.data);
                let e = match since {
                    None => delta::initial_entries(&d, &params),
                    Some(seq) => delta::change_entries(&d, &params, seq, self.immutable),
                };
                (e, d.seq)
            };
            let mut store = lock(&self.mb.delta);
            let sid = store.start_session(params, entries, snapshot, page);
            let Ok(s) = store.session(&format!("{sid}_0"), folder_idx, None) else {
                return gone(self);
            };
            s
        };
        let page_size = prefer_page.unwrap_or(session.page_size);
        let quirks = lock(&self.shared.faults).delta_quirks(pos > 0);
        if quirks.empty_page || quirks.duplicate {
            self.shared.stats.bump(Counter::DeltaQuirk);
        }
        if quirks.empty_page {
            // An empty page whose nextLink points at the same position.
            let body = json!({
                "@odata.context": format!("{}/$metadata#Collection(message)", self.shared.graph_url()),
                "value": [],
                "@odata.nextLink": format!("{base_link}?$skiptoken={session_id}_{pos}"),
            });
            return self.with_pref(ok_json(self.r, &body), prefer_page);
        }
        let end = (pos + page_size).min(session.entries.len());
        let start = if quirks.duplicate {
            pos.saturating_sub(1)
        } else {
            pos
        };
        let slice = session.entries.get(start..end).unwrap_or(&[]);
        let values: Vec<Value> = {
            let d = lock(&self.mb.data);
            slice
                .iter()
                .map(|e| match e {
                    Entry::Present {
                        key,
                        rest_id,
                        immutable_id,
                    } => match d.messages.get(key) {
                        // Still where the snapshot saw it: report its current state.
                        Some(m)
                            if m.folder == session.params.folder
                                && m.id(self.immutable)
                                    == if self.immutable {
                                        immutable_id
                                    } else {
                                        rest_id
                                    } =>
                        {
                            self.message_json(&d, m, session.params.select.as_deref(), true)
                        }
                        // Deleted or moved away since the snapshot: report it removed under the
                        // id the client would know it by.
                        _ => removed_json(if self.immutable {
                            immutable_id
                        } else {
                            rest_id
                        }),
                    },
                    Entry::Removed {
                        rest_id,
                        immutable_id,
                    } => removed_json(if self.immutable {
                        immutable_id
                    } else {
                        rest_id
                    }),
                })
                .collect()
        };
        let mut body = json!({
            "@odata.context": format!("{}/$metadata#Collection(message)", self.shared.graph_url()),
            "value": values,
        });
        if end < session.entries.len() {
            body["@odata.nextLink"] = json!(format!("{base_link}?$skiptoken={session_id}_{end}"));
        } else {
            let token =
                lock(&self.mb.delta).issue_token(session.params.clone(), session.snapshot_seq);
            body["@odata.deltaLink"] = json!(format!("{base_link}?$deltatoken={token}"));
        }
        self.with_pref(ok_json(self.r, &body), prefer_page)
    }
}

fn removed_json(id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.message",
        "id": id,
        "@removed": {"reason": "deleted"},
    })
}
