//! Mail folder endpoints: root listing, child folders, single folder, search folder JSON.

use serde_json::{Map, Value, json};

use super::{Ctx, ok_json, query_error};
use crate::config::FolderKind;
use crate::mailbox::MailboxData;
use crate::odata;
use crate::server::Resp;
use crate::util::lock;

const FOLDER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "sizeInBytes",
    "isHidden",
];

impl Ctx<'_> {
    pub(super) fn folder_json(&self, d: &MailboxData, i: usize, select: Option<&[&str]>) -> Value {
        let f = &d.folders[i];
        let keys = d.folder_message_keys(i);
        let unread = keys
            .iter()
            .filter_map(|k| d.messages.get(k))
            .filter(|m| !m.is_read)
            .count();
        let parent = match f.parent {
            Some(p) => d.folders[p].id.clone(),
            None => format!("{}AAAAAAEAAAA=", &f.id[..f.id.len().saturating_sub(12)]),
        };
        let mut o = Map::new();
        if f.kind == FolderKind::UnreadSearch {
            o.insert(
                "@odata.type".into(),
                json!("#microsoft.graph.mailSearchFolder"),
            );
        }
        let size: usize = keys.len() * 4096;
        let all: [(&str, Value); 8] = [
            ("id", json!(f.id)),
            ("displayName", json!(f.display_name)),
            ("parentFolderId", json!(parent)),
            ("childFolderCount", json!(d.children(i).len())),
            ("unreadItemCount", json!(unread)),
            ("totalItemCount", json!(keys.len())),
            ("sizeInBytes", json!(size)),
            ("isHidden", json!(f.hidden)),
        ];
        for (k, v) in all {
            if k == "id" || select.is_none_or(|s| s.contains(&k)) {
                o.insert(k.into(), v);
            }
        }
        if f.kind == FolderKind::UnreadSearch && select.is_none() {
            o.insert("isSupported".into(), json!(true));
            o.insert("includeNestedFolders".into(), json!(true));
            o.insert("sourceFolderIds".into(), json!([d.folders[0].id]));
            o.insert("filterQuery".into(), json!("isRead eq false"));
        }
        Value::Object(o)
    }

    pub(super) fn folder_list(&self, parent: Option<&str>) -> Resp {
        let q = self.r.query_map();
        if q.contains_key("$filter") || q.contains_key("$orderby") {
            return self.err(
                400,
                "BadRequest",
                "The emulator does not support $filter or $orderby on mail folders; list them and filter on the client.",
            );
        }
        let select = match q.get("$select") {
            Some(s) => match odata::parse_select(s, FOLDER_PROPERTIES, "mailFolder") {
                Ok(v) => Some(v),
                Err(e) => return query_error(self.r, e),
            },
            None => None,
        };
        let paging = match self.paging(&q) {
            Ok(p) => p,
            Err(e) => return query_error(self.r, e),
        };
        let hidden = q
            .get("includeHiddenFolders")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let d = lock(&self.mb.data);
        let parent_idx = match parent {
            None => 0,
            Some(p) => match d.folder_index(p) {
                Some(i) => i,
                None => return self.not_found(),
            },
        };
        let children: Vec<usize> = d
            .children(parent_idx)
            .into_iter()
            .filter(|&i| hidden || !d.folders[i].hidden)
            .collect();
        let total = children.len();
        let page: Vec<Value> = children
            .iter()
            .skip(paging.skip)
            .take(paging.top)
            .map(|&i| self.folder_json(&d, i, select.as_deref()))
            .collect();
        let what = match parent {
            None => "mailFolders".to_owned(),
            Some(_) => format!("mailFolders('{}')/childFolders", d.folders[parent_idx].id),
        };
        drop(d);
        let body = self.collection_page(&q, &what, page, total, &paging);
        ok_json(self.r, &body)
    }

    pub(super) fn folder(&self, f: &str) -> Resp {
        let q = self.r.query_map();
        let select = match q.get("$select") {
            Some(s) => match odata::parse_select(s, FOLDER_PROPERTIES, "mailFolder") {
                Ok(v) => Some(v),
                Err(e) => return query_error(self.r, e),
            },
            None => None,
        };
        let d = lock(&self.mb.data);
        let Some(i) = d.folder_index(f) else {
            return self.not_found();
        };
        let mut v = self.folder_json(&d, i, select.as_deref());
        v["@odata.context"] = json!(self.context("mailFolders/$entity"));
        drop(d);
        ok_json(self.r, &v)
    }
}
