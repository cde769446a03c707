//! `oftp http`: the HTTP API's tokens and the console users' password hashes.
//!
//! - `oftp http token create --name N --role read|admin` prints a new token's secret once
//!   (it is stored as a SHA-256 hash in the tokens file, `[http] tokens_file`);
//! - `oftp http token list` lists the tokens' names, roles and creation times (never a
//!   secret);
//! - `oftp http token revoke N` removes one;
//! - `oftp http hash-password` reads a password and prints its Argon2id PHC string for
//!   `[[http.users]] password_hash`: on a terminal it asks twice without echoing what is
//!   typed; otherwise it reads the first line of standard input (a pipe, a file).
//!
//! The token commands work on the tokens file directly, whether or not the daemon runs; a
//! running daemon reads the file again when it changes, so a new token works and a revoked one
//! stops working at once.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use oftp_http::auth::Role;
use oftp_http::auth::tokens::TokenStore;

use crate::config;

/// `oftp http`.
#[derive(Subcommand, Debug)]
pub(crate) enum HttpCommand {
    /// The API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read a password (typed twice without echo on a terminal, else the first line of
    /// standard input) and print its Argon2id hash for [[http.users]] password_hash.
    HashPassword,
}

/// `oftp http token`.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Make a token and print its secret (shown only now; stored hashed).
    Create(CreateArgs),
    /// List the tokens (names, roles, when made; never the secrets).
    List(ConfigArg),
    /// Remove a token: requests with it are refused from now on.
    Revoke(RevokeArgs),
}

/// The configuration, to find the tokens file.
#[derive(Args, Debug)]
pub(crate) struct ConfigArg {
    /// Configuration file (default: ./oftp-data/oftp.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `oftp http token create`.
#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The token's name (unique; shown in the daemon's log for what it does).
    #[arg(long)]
    name: String,
    /// What it may do: read (look only) or admin (also call, retry, cancel, upload,
    /// acknowledge).
    #[arg(long, value_enum)]
    role: RoleArg,
}

/// `oftp http token revoke`.
#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The token's name.
    name: String,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum RoleArg {
    Read,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Read => Role::Read,
            RoleArg::Admin => Role::Admin,
        }
    }
}

pub(crate) fn http(command: HttpCommand) -> Result<()> {
    match command {
        HttpCommand::Token(TokenCommand::Create(a)) => {
            let name = a.name.trim();
            if name.is_empty() {
                bail!("--name is empty; give the token a name, e.g. --name grafana");
            }
            let secret = store(&a.config)?.create(name, a.role.into(), chrono::Utc::now())?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "Created the {} token {name:?} (shown only now; it is stored hashed):\n\n    {secret}\n",
                Role::from(a.role).as_str()
            )?;
        }
        HttpCommand::Token(TokenCommand::List(a)) => {
            let tokens = store(&a)?.list()?;
            let mut out = std::io::stdout().lock();
            if tokens.is_empty() {
                writeln!(
                    out,
                    "no tokens; `oftp http token create` makes one (oftp serve makes an admin token on its first run)"
                )?;
            }
            for t in tokens {
                writeln!(
                    out,
                    "{:<24} {:<6} {}",
                    t.name,
                    t.role.as_str(),
                    t.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                )?;
            }
        }
        HttpCommand::Token(TokenCommand::Revoke(a)) => {
            store(&a.config)?.revoke(&a.name)?;
            writeln!(std::io::stdout().lock(), "revoked token {:?}", a.name)?;
        }
        HttpCommand::HashPassword => {
            let password = read_new_password()?;
            writeln!(std::io::stdout().lock(), "{}", hash_password(&password)?)?;
        }
    }
    Ok(())
}

/// The tokens file of the configuration `arg` names.
fn store(arg: &ConfigArg) -> Result<TokenStore> {
    let path = arg
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let loaded = config::load(&path)?;
    let file = loaded.file.http.tokens_path(&loaded.data_dir);
    Ok(TokenStore::open(&file)?)
}

/// The password to hash: typed twice without echo when standard input is a terminal (the two
/// must agree), else the first line of standard input without its line end.
fn read_new_password() -> Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("The same password again: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the two passwords differ; run `oftp http hash-password` again");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password on standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The Argon2id PHC string of `password` (default parameters, a random salt), as the console
/// checks it ([`oftp_http::console::users`]).
fn hash_password(password: &str) -> Result<String> {
    if password.is_empty() {
        bail!("the password is empty; type one (or pipe it in on standard input)");
    }
    Ok(oftp_http::console::users::hash_password(password)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::Argon2;
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;

    #[test]
    fn a_hashed_password_verifies_and_an_empty_one_is_refused() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        assert!(hash_password("").is_err());
    }
}
