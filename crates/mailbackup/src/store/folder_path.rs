//! A folder's path as the index keeps it: display names from the mailbox root down, joined by
//! `/`. A `/` or `%` inside a name is written `%2F` / `%25`, so names that contain `/` (Outlook
//! allows it) split back into the same segments.

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
}
