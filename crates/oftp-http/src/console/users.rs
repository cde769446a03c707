//! Console log-in by user name and password: `[[http.users]]` with Argon2 hashes in the PHC
//! string format (the `argon2` crate of RustCrypto, pure Rust; `argon2id` with its default
//! parameters for new hashes).
//!
//! A wrong password and an unknown user answer the same and take the same time: an unknown
//! name is checked against a stand-in hash with the parameters of the first configured user,
//! so the work done does not tell whether the name exists.

use std::sync::OnceLock;

use argon2::{Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier};

use crate::auth::Principal;
use crate::config::ConsoleUser;

/// Why a password cannot be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The PHC string of `password` for `[[http.users]] password_hash` (argon2id, a random salt,
/// the crate's default parameters).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `hash` is an Argon2 PHC string this crate can check passwords against; `Err`
/// says what is wrong (for the configuration check).
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string ({e})"))?;
    argon2::Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|_| format!("{} is not an Argon2 hash", parsed.algorithm))?;
    Params::try_from(&parsed).map_err(|e| format!("its Argon2 parameters are invalid ({e})"))?;
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("it has no salt or no hash part".into());
    }
    Ok(())
}

/// Who `name` with `password` is among `users`, if the password is right. Slow on purpose
/// (Argon2): call it on a blocking thread.
pub fn verify(users: &[ConsoleUser], name: &str, password: &str) -> Option<Principal> {
    match users.iter().find(|u| u.name == name) {
        Some(user) => {
            let ok = PasswordHash::new(&user.password_hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            });
            ok.then(|| Principal {
                name: user.name.clone(),
                role: user.role,
            })
        }
        None => {
            // The same work as for a known user, with nothing to find.
            let stand_in = stand_in(users);
            if let Ok(hash) = PasswordHash::new(stand_in) {
                let _ = Argon2::default().verify_password(password.as_bytes(), &hash);
            }
            None
        }
    }
}

/// A hash of a random password with the first user's parameters, made once.
fn stand_in(users: &[ConsoleUser]) -> &'static str {
    static STAND_IN: OnceLock<String> = OnceLock::new();
    STAND_IN.get_or_init(|| {
        let params = users
            .first()
            .and_then(|u| PasswordHash::new(&u.password_hash).ok())
            .and_then(|h| Params::try_from(&h).ok())
            .unwrap_or_default();
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        Argon2::from(params)
            .hash_password(&random)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::auth::Role;

    fn users() -> Vec<ConsoleUser> {
        vec![ConsoleUser {
            name: "ops".into(),
            password_hash: hash_password("correct horse").unwrap(),
            role: Role::Read,
        }]
    }

    #[test]
    fn the_right_password_logs_in_with_the_users_role_and_a_wrong_one_does_not() {
        let users = users();
        assert!(users[0].password_hash.starts_with("$argon2id$"));
        assert_eq!(check_hash(&users[0].password_hash), Ok(()));
        let p = verify(&users, "ops", "correct horse").expect("the right password");
        assert_eq!((p.name.as_str(), p.role), ("ops", Role::Read));
        assert_eq!(verify(&users, "ops", "correct horsE"), None);
        assert_eq!(verify(&users, "OPS", "correct horse"), None);
    }

    #[test]
    fn an_unknown_user_takes_as_long_as_a_wrong_password() {
        let users = users();
        let time = |name: &str| {
            let start = Instant::now();
            for _ in 0..3 {
                assert_eq!(verify(&users, name, "wrong"), None);
            }
            start.elapsed()
        };
        time("nobody"); // makes the stand-in hash once
        let (known, unknown) = (time("ops"), time("nobody"));
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "unknown user {unknown:?} vs wrong password {known:?}"
        );
    }

    #[test]
    fn a_hash_that_is_not_argon2_is_refused_with_the_reason() {
        assert!(
            check_hash("secret")
                .unwrap_err()
                .contains("not a PHC string")
        );
        assert!(
            check_hash("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
                .unwrap_err()
                .contains("not an Argon2 hash")
        );
    }
}
