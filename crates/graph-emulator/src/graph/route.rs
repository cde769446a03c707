//! Graph URL paths to resources: `me` or `users/{id}`, OData key syntax (`mailFolders('inbox')`),
//! `childFolders` chains, `$value` and `delta` segments.

use hyper::Method;

use crate::stats::EndpointKind;
use crate::util::percent_decode;

/// Who the path names.
#[derive(Debug, Clone)]
pub(super) enum UserRef {
    Me,
    Id(String),
}

/// What the path asks for.
#[derive(Debug, Clone)]
pub(super) enum Resource {
    Profile,
    FolderList(Option<String>),
    Folder(String),
    Messages(Option<String>),
    Delta(String),
    MailboxDelta,
    Message(String),
    Value(String),
    /// `messages/{id}/attachments` (POST only).
    Attachments(String),
    /// `messages/{id}/attachments/createUploadSession`.
    UploadSession(String),
    /// The upload URL of an attachment upload session (PUT only).
    AttachmentSession {
        message: String,
        session: String,
    },
}

impl Resource {
    pub(super) fn kind(&self) -> EndpointKind {
        match self {
            Resource::Profile => EndpointKind::User,
            Resource::FolderList(_) | Resource::Folder(_) => EndpointKind::Folders,
            Resource::Messages(_) => EndpointKind::Messages,
            Resource::Delta(_) | Resource::MailboxDelta => EndpointKind::Delta,
            Resource::Message(_) => EndpointKind::Message,
            Resource::Value(_) => EndpointKind::MessageValue,
            Resource::Attachments(_) | Resource::UploadSession(_) => EndpointKind::AttachmentCreate,
            Resource::AttachmentSession { .. } => EndpointKind::AttachmentUpload,
        }
    }

    /// The endpoint kind of a request: writes to listing and message resources count apart.
    pub(super) fn kind_for(&self, method: &Method) -> EndpointKind {
        match (self, method) {
            (Resource::FolderList(_), &Method::POST) => EndpointKind::FolderCreate,
            (Resource::Messages(_), &Method::POST) => EndpointKind::MessageCreate,
            (Resource::Message(_), &Method::PATCH) => EndpointKind::MessageUpdate,
            _ => self.kind(),
        }
    }
}

/// Splits `name('key')` into `name`, `key`.
fn expand_segment(seg: &str, out: &mut Vec<String>) {
    if let Some(open) = seg.find('(')
        && seg.ends_with(')')
    {
        let name = &seg[..open];
        let inner = seg[open + 1..seg.len() - 1].trim();
        out.push(name.to_owned());
        let key = inner.trim_matches('\'');
        if !key.is_empty() {
            out.push(key.replace("''", "'"));
        }
        return;
    }
    out.push(seg.to_owned());
}

pub(super) enum Parsed {
    Graph(UserRef, Resource),
    /// `GET /users` (the directory listing).
    UserList,
    Batch,
    Unknown(String),
}

pub(super) fn parse_path(path: &str) -> Parsed {
    let rest = path.strip_prefix("/v1.0").unwrap_or(path);
    let mut segs = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        expand_segment(&percent_decode(raw), &mut segs);
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (user, mut rest): (UserRef, Vec<&str>) = match s.as_slice() {
        ["$batch"] => return Parsed::Batch,
        ["users"] => return Parsed::UserList,
        ["me", rest @ ..] => (UserRef::Me, rest.to_vec()),
        ["users", id, rest @ ..] => (UserRef::Id((*id).to_owned()), rest.to_vec()),
        [first, ..] => return Parsed::Unknown((*first).to_owned()),
        [] => return Parsed::Unknown(String::new()),
    };
    // mailFolders/{a}/childFolders/{b}/... addresses folder b directly.
    while rest.len() > 4
        && rest[0].eq_ignore_ascii_case("mailFolders")
        && rest[2].eq_ignore_ascii_case("childFolders")
    {
        rest = [&["mailFolders", rest[3]][..], &rest[4..]].concat();
    }
    let lower: Vec<String> = rest.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let res = match (l.as_slice(), rest.as_slice()) {
        ([], _) => Resource::Profile,
        (["mailfolders"], _) => Resource::FolderList(None),
        (["mailfolders", _], [_, f]) => Resource::Folder((*f).to_owned()),
        (["mailfolders", _, "childfolders"], [_, f, _]) => {
            Resource::FolderList(Some((*f).to_owned()))
        }
        (["mailfolders", _, "messages"], [_, f, _]) => Resource::Messages(Some((*f).to_owned())),
        (["mailfolders", _, "messages", "delta"], [_, f, _, _]) => Resource::Delta((*f).to_owned()),
        (["mailfolders", _, "messages", _], [_, _, _, id]) => Resource::Message((*id).to_owned()),
        (["mailfolders", _, "messages", _, "$value"], [_, _, _, id, _]) => {
            Resource::Value((*id).to_owned())
        }
        (["messages"], _) => Resource::Messages(None),
        (["messages", "delta"], _) => Resource::MailboxDelta,
        (["messages", _], [_, id]) => Resource::Message((*id).to_owned()),
        (["messages", _, "$value"], [_, id, _]) => Resource::Value((*id).to_owned()),
        (["messages", _, "attachments"], [_, id, _])
        | (["mailfolders", _, "messages", _, "attachments"], [_, _, _, id, _]) => {
            Resource::Attachments((*id).to_owned())
        }
        (["messages", _, "attachments", "createuploadsession"], [_, id, _, _])
        | (
            [
                "mailfolders",
                _,
                "messages",
                _,
                "attachments",
                "createuploadsession",
            ],
            [_, _, _, id, _, _],
        ) => Resource::UploadSession((*id).to_owned()),
        (["messages", _, "attachmentsessions", _], [_, id, _, s]) => Resource::AttachmentSession {
            message: (*id).to_owned(),
            session: (*s).to_owned(),
        },
        _ => {
            let bad = rest
                .iter()
                .find(|x| {
                    !matches!(
                        x.to_ascii_lowercase().as_str(),
                        "mailfolders"
                            | "childfolders"
                            | "messages"
                            | "delta"
                            | "$value"
                            | "attachments"
                            | "createuploadsession"
                            | "attachmentsessions"
                    )
                })
                .or(rest.last())
                .copied()
                .unwrap_or_default();
            return Parsed::Unknown(bad.to_owned());
        }
    };
    Parsed::Graph(user, res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> String {
        match parse_path(p) {
            Parsed::Graph(u, r) => format!("{u:?} {r:?}"),
            Parsed::Batch => "batch".into(),
            Parsed::UserList => "users".into(),
            Parsed::Unknown(s) => format!("unknown {s}"),
        }
    }

    #[test]
    fn paths_parse_like_graph() {
        assert_eq!(res("/v1.0/me"), "Me Profile");
        assert_eq!(res("/v1.0/me/mailFolders"), "Me FolderList(None)");
        assert_eq!(
            res("/v1.0/users/a%40b.c/mailFolders('inbox')/messages/delta()"),
            "Id(\"a@b.c\") Delta(\"inbox\")"
        );
        assert_eq!(
            res("/v1.0/me/mailFolders/X/childFolders"),
            "Me FolderList(Some(\"X\"))"
        );
        assert_eq!(
            res("/v1.0/me/mailFolders/X/childFolders/Y/messages"),
            "Me Messages(Some(\"Y\"))"
        );
        assert_eq!(res("/v1.0/me/messages/ID/%24value"), "Me Value(\"ID\")");
        assert_eq!(
            res("/v1.0/me/mailFolders/F/messages/ID/$value"),
            "Me Value(\"ID\")"
        );
        assert_eq!(res("/v1.0/me/messages/delta"), "Me MailboxDelta");
        assert_eq!(
            res("/v1.0/me/mailFolders/F/messages/ID/attachments"),
            "Me Attachments(\"ID\")"
        );
        assert_eq!(
            res("/v1.0/users/u/messages/ID/attachments/createUploadSession"),
            "Id(\"u\") UploadSession(\"ID\")"
        );
        assert_eq!(
            res("/v1.0/users/u/messages/ID/attachmentSessions/S"),
            "Id(\"u\") AttachmentSession { message: \"ID\", session: \"S\" }"
        );
        assert_eq!(res("/v1.0/$batch"), "batch");
        assert_eq!(res("/v1.0/users"), "users");
        assert_eq!(res("/v1.0/users/"), "users");
        assert_eq!(res("/v1.0/me/contacts"), "unknown contacts");
        assert_eq!(res("/v1.0/groups/x"), "unknown groups");
    }

    proptest::proptest! {
        #[test]
        fn parse_path_never_panics(input in "(/[a-zA-Z0-9%$()'=_-]{0,12}){0,8}") {
            let _ = parse_path(&format!("/v1.0{input}"));
        }

        #[test]
        fn arbitrary_text_never_panics(input in ".{0,60}") {
            let _ = parse_path(&input);
        }
    }
}
