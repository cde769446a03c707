//! The one parser of OAuth redirect answers (authorization code in the query, implicit-grant
//! token in the fragment), used by the loopback listener and by
//! [`crate::WebAuthorization::code_from_redirect`].
//!
//! `state` is checked first and in constant time (an answer for another sign-in attempt is not
//! even interpreted as an error), then an `error` answer becomes
//! [`AuthError::AuthorizationDenied`], then the wanted parameter must be present and non-empty.

use std::collections::HashMap;

use crate::error::AuthError;

/// Decodes `a=b&c=d` text (a query or fragment, with or without its leading `?` / `#`).
pub(crate) fn parse_params(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.trim_start_matches(['?', '#']).as_bytes())
        .into_owned()
        .collect()
}

/// Checks a redirect's parameters against the `state` sent; returns them when they carry a
/// non-empty `wanted` (`code` or `access_token`).
pub(crate) fn check(
    params: HashMap<String, String>,
    expected_state: &str,
    wanted: &str,
) -> Result<HashMap<String, String>, AuthError> {
    let state_ok = params
        .get("state")
        .is_some_and(|s| constant_time_eq(s.as_bytes(), expected_state.as_bytes()));
    if !state_ok {
        return Err(AuthError::StateMismatch);
    }
    if let Some(error) = params.get("error") {
        return Err(AuthError::AuthorizationDenied {
            error: error.clone(),
            description: params
                .get("error_description")
                .map(|d| d.lines().next().unwrap_or("").to_owned())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "no description given".to_owned()),
        });
    }
    if params.get(wanted).is_none_or(|v| v.is_empty()) {
        return Err(AuthError::InvalidRedirect(format!(
            "it has no {wanted} parameter"
        )));
    }
    Ok(params)
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed
/// `state` was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_and_fragment_text() {
        let p = parse_params("#access_token=a%2Bb&state=s+t&expires_in=3600");
        assert_eq!(p.get("access_token").map(String::as_str), Some("a+b"));
        assert_eq!(p.get("state").map(String::as_str), Some("s t"));
        assert_eq!(
            parse_params("?code=x").get("code").map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn state_is_checked_before_anything_else() {
        let forged_denial = parse_params("error=access_denied&state=other");
        assert!(matches!(
            check(forged_denial, "s", "code"),
            Err(AuthError::StateMismatch)
        ));
        assert!(matches!(
            check(parse_params("code=c"), "s", "code"),
            Err(AuthError::StateMismatch)
        ));
    }

    #[test]
    fn denial_keeps_the_first_line_of_its_description() {
        let p = parse_params("error=access_denied&error_description=no%0Atrace+id&state=s");
        match check(p, "s", "code") {
            Err(AuthError::AuthorizationDenied { error, description }) => {
                assert_eq!(
                    (error.as_str(), description.as_str()),
                    ("access_denied", "no")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_wanted_parameter_must_be_present_and_non_empty() {
        for text in ["state=s", "code=&state=s", "access_token=t&state=s"] {
            let e = check(parse_params(text), "s", "code").unwrap_err();
            assert!(e.to_string().contains("no code parameter"), "{text}: {e}");
        }
        let ok = check(parse_params("code=c&state=s"), "s", "code").unwrap();
        assert_eq!(ok.get("code").map(String::as_str), Some("c"));
    }
}
