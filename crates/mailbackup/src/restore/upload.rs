//! Attachments too large for the creating request, uploaded afterwards through Graph's
//! upload sessions in ranges.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{Run, Upload, parse};
use crate::error::Error;
use crate::graph::{Body, encode_segment};

/// Largest range of an upload session `PUT`.
const UPLOAD_CHUNK: usize = 4 * 1024 * 1024 - 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadSession {
    upload_url: String,
}

impl Run {
    /// Uploads one large attachment through an upload session.
    pub(super) async fn upload(&self, message: &str, u: &Upload) -> Result<(), Error> {
        let url = self.graph.url(
            &format!(
                "{}/messages/{}/attachments/createUploadSession",
                self.mbp(),
                encode_segment(message)
            ),
            &[],
        );
        let mut item = json!({
            "attachmentType": "file",
            "name": u.name,
            "size": u.bytes.len(),
            "contentType": u.content_type,
            "isInline": u.inline,
        });
        if let Some(cid) = &u.content_id {
            item["contentId"] = json!(cid);
        }
        let body = self
            .post_json(&url, &json!({"AttachmentItem": item}))
            .await?;
        let session: UploadSession = parse(&url, &body)?;
        let total = u.bytes.len();
        let mut start = 0;
        while start < total {
            let end = (start + UPLOAD_CHUNK).min(total);
            let chunk = Bytes::copy_from_slice(&u.bytes[start..end]);
            self.put_range(&session.upload_url, start, end, total, chunk)
                .await?;
            start = end;
        }
        Ok(())
    }

    async fn put_range(
        &self,
        url: &str,
        start: usize,
        end: usize,
        total: usize,
        chunk: Bytes,
    ) -> Result<(), Error> {
        let body = Body {
            content_type: "application/octet-stream",
            bytes: chunk,
            content_range: Some(format!("bytes {start}-{}/{total}", end - 1)),
        };
        self.graph
            .send(&self.gate, reqwest::Method::PUT, url, Some(&body), None)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }
}
