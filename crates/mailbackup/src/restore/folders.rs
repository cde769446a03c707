//! The target mailbox's folders during a restore: its tree read once, and each folder a
//! restored message needs, found or created (the tree kept).

use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::json;

use super::{Run, parse};
use crate::error::Error;
use crate::graph::{Page, encode_segment};
use crate::store::folder_path;

/// A folder of the target as listed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChildFolder {
    id: String,
    #[serde(default)]
    display_name: String,
}

impl Run {
    /// Reads the target's folder tree into `folders`.
    pub(super) async fn load_target_folders(&self) -> Result<(), Error> {
        let list = self.graph.folders(&self.gate, &self.target).await?;
        let mut f = self.folders.lock().await;
        for folder in list {
            f.insert(folder_path::fold(&folder.path), folder.id);
        }
        Ok(())
    }

    /// The id of the target folder at `path`, creating what is missing.
    pub(super) async fn ensure_folder(&self, path: &str) -> Result<String, Error> {
        // One creation at a time: two messages of a new folder must not create it twice.
        let mut folders = self.folders.lock().await;
        if let Some(id) = folders.get(&folder_path::fold(path)) {
            return Ok(id.clone());
        }
        let segments = folder_path::split(path);
        let mut parent: Option<String> = None;
        for n in 1..=segments.len() {
            let here = folder_path::fold(&folder_path::join(&segments[..n]));
            if let Some(id) = folders.get(&here) {
                parent = Some(id.clone());
                continue;
            }
            let name = &segments[n - 1];
            let url = match &parent {
                None => self.graph.url(&format!("{}/mailFolders", self.mbp()), &[]),
                Some(p) => self.graph.url(
                    &format!(
                        "{}/mailFolders/{}/childFolders",
                        self.mbp(),
                        encode_segment(p)
                    ),
                    &[],
                ),
            };
            let id = match self.post_json(&url, &json!({"displayName": name})).await {
                Ok(body) => {
                    self.folders_created.fetch_add(1, Ordering::Relaxed);
                    parse::<ChildFolder>(&url, &body)?.id
                }
                // Created by someone else meanwhile (Graph answers 409, some tenants 400).
                Err(Error::Graph { code, .. }) if code == "ErrorFolderExists" => {
                    self.find_child(parent.as_deref(), name).await?
                }
                Err(e) => return Err(e),
            };
            folders.insert(here, id.clone());
            parent = Some(id);
        }
        parent.ok_or_else(|| Error::Protocol {
            url: self.graph.url(&self.mbp(), &[]),
            reason: "an empty folder path".into(),
        })
    }

    /// The id of the child `name` of `parent` (top level when `None`).
    async fn find_child(&self, parent: Option<&str>, name: &str) -> Result<String, Error> {
        let mut url = match parent {
            None => self.graph.url(
                &format!("{}/mailFolders", self.mbp()),
                &[("includeHiddenFolders", "true"), ("$top", "250")],
            ),
            Some(p) => self.graph.url(
                &format!(
                    "{}/mailFolders/{}/childFolders",
                    self.mbp(),
                    encode_segment(p)
                ),
                &[("includeHiddenFolders", "true"), ("$top", "250")],
            ),
        };
        loop {
            let page: Page<ChildFolder> = self.graph.page(&self.gate, &url, None).await?;
            let folded = folder_path::fold(name);
            if let Some(f) = page
                .value
                .into_iter()
                .find(|f| folder_path::fold(&f.display_name) == folded)
            {
                return Ok(f.id);
            }
            match page.next_link {
                Some(n) => url = n,
                None => {
                    return Err(Error::Protocol {
                        url: crate::graph::strip_query(&url),
                        reason: format!("Graph says folder {name:?} exists but does not list it"),
                    });
                }
            }
        }
    }
}
