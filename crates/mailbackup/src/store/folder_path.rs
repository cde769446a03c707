//! A folder's path as the index keeps it: display names from the mailbox root down, joined by
//! `/`. A `/` or `%` inside a name is written `%2F` / `%25`, so names that contain `/` (Outlook
//! allows it) split back into the same segments.
//!
//! Exchange compares folder names without regard to case, so every selection by folder
//! (`search folder:`, `export --folder`, `restore --folder`) goes through [`within`].

/// Joins display names into a path.
pub fn join<S: AsRef<str>>(segments: &[S]) -> String {
    segments
        .iter()
        .map(|s| s.as_ref().replace('%', "%25").replace('/', "%2F"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Splits a path into display names (an empty path has none).
pub fn split(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    path.split('/')
        .map(|s| s.replace("%2F", "/").replace("%25", "%"))
        .collect()
}

/// A folder name or path in the form names are compared in: Unicode lowercase (`Inbox` and
/// `INBOX` are one folder in Exchange; so are `Überblick` and `überblick`).
pub fn fold(path: &str) -> String {
    path.to_lowercase()
}

/// Whether the folder at `path` is `folder` or one below it, ignoring case (see [`fold`]);
/// `/` around `folder` is ignored. `Inbox/Clients` is within `inbox`, `Inboxes` is not.
pub fn within(path: &str, folder: &str) -> bool {
    let (path, folder) = (fold(path), fold(folder.trim_matches('/')));
    path.strip_prefix(&folder)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_and_percents_round_trip() {
        let names = ["Inbox", "a/b", "50% off", "%2F"];
        let p = join(&names);
        assert_eq!(p, "Inbox/a%2Fb/50%25 off/%252F");
        assert_eq!(split(&p), names);
        assert!(split("").is_empty());
    }

    #[test]
    fn a_folder_contains_itself_and_those_below_whatever_the_case() {
        assert!(within("Inbox", "inbox"));
        assert!(within("Inbox/Clients/Acme", "INBOX/clients/"));
        assert!(within(
            "Inbox/Projects/2024 %2F Q1 — Überblick",
            "inbox/projects/2024 %2F q1 — üBERBLICK"
        ));
        assert!(!within("Inboxes", "Inbox"), "not a prefix of a name");
        assert!(!within("Inbox", "Inbox/Clients"));
        assert!(!within("Archive", "Inbox"));
    }
}
