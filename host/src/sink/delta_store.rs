//! Where the Delta output's files live when the table is not on the local filesystem:
//! `s3://BUCKET/PATH` on Amazon S3 or an S3-compatible store (MinIO, R2, Ceph).
//!
//! deltalake's own `s3` feature brings the AWS SDK and a DynamoDB lock for commits. weir
//! needs neither: object_store's S3 client signs requests itself, and a commit is a PUT of
//! the next log entry with `If-None-Match: *`, which S3 refuses when the entry exists. Two
//! writers can therefore never both write version N; the loser sees `VersionAlreadyExists`
//! and weir's delivery tries again from the table it reads anew (see DECISIONS).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use anyhow::{anyhow, Result};
use deltalake::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory, ObjectStoreFactory,
    ObjectStoreRef, StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};
use url::Url;

/// The schemes besides the local filesystem that a Delta path may name.
pub const SCHEMES: [&str; 1] = ["s3"];

/// Checks `options` (the `[sink.delta] storage` table) for a table at `path`: each key must
/// be one the store knows. The error starts with the bad key (`path` or `storage.KEY`).
pub fn check_options(path: &str, options: &HashMap<String, String>) -> Result<()> {
    let scheme = path.split_once("://").map(|(s, _)| s).filter(|s| *s != "file");
    match scheme {
        None if !options.is_empty() => {
            Err(anyhow!("storage: the options are for object stores, and {path:?} is on the local filesystem"))
        }
        None => Ok(()),
        Some(s) if !SCHEMES.contains(&s) => Err(anyhow!(
            "path {path:?}: the {s}:// object store is not built in; weir writes Delta tables to a local directory \
             or to s3://BUCKET/PATH (Amazon S3 or an S3-compatible store)"
        )),
        Some(_) => {
            let bucket = path.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(""));
            if bucket.is_none_or(str::is_empty) {
                return Err(anyhow!("path {path:?}: name the bucket, as in s3://BUCKET/PATH"));
            }
            for key in options.keys() {
                AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
                    anyhow!("storage.{key}: not an S3 option (e.g. aws_endpoint, aws_region, aws_allow_http)")
                })?;
            }
            Ok(())
        }
    }
}

/// Makes `s3://` table locations open through [`S3Store`]; idempotent.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let url = Url::parse("s3://").expect("a scheme URL parses");
        object_store_factories().insert(url.clone(), Arc::new(S3Store));
        logstore_factories().insert(url, Arc::new(ConditionalPutLog));
    });
}

/// S3 through object_store: credentials, region and endpoint from the `AWS_*` environment
/// (as the AWS tools read them), overridden by the pipeline's `storage` options.
struct S3Store;

impl ObjectStoreFactory for S3Store {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        for (key, value) in &config.raw {
            // Keys as the AWS tools spell them (AWS_REGION) work too.
            if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                builder = builder.with_config(key, value);
            }
        }
        // A store that is down is weir's to wait out (the output pauses, backs off and says
        // why in /readyz), not the client's: it gives up after a few quick tries.
        let retry =
            RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(15) };
        let store = builder.with_retry(retry).build().map_err(|e| DeltaTableError::ObjectStore { source: e })?;
        let path = Path::from_url_path(url.path()).map_err(|e| DeltaTableError::GenericError { source: e.into() })?;
        Ok((Arc::new(store), path))
    }
}

/// The default log store, whose commits are conditional PUTs.
struct ConditionalPutLog;

impl LogStoreFactory for ConditionalPutLog {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_by_key() {
        let opts = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(check_options("s3://lake/rides", &opts(&[("aws_endpoint", "http://x"), ("aws_allow_http", "true")]))
            .is_ok());
        let err = check_options("s3://lake/rides", &opts(&[("endpoint_uri", "http://x")])).unwrap_err();
        assert!(err.to_string().starts_with("storage.endpoint_uri: not an S3 option"), "{err}");
        let err = check_options("lake/rides", &opts(&[("aws_region", "eu-west-1")])).unwrap_err();
        assert!(err.to_string().contains("local filesystem"), "{err}");
        let err = check_options("gs://lake/rides", &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("gs:// object store is not built in"), "{err}");
        let err = check_options("s3:///rides", &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("name the bucket"), "{err}");
        assert!(check_options("file:///tmp/rides", &HashMap::new()).is_ok());
        assert!(check_options("s3://lake/rides", &opts(&[("AWS_REGION", "eu-west-1")])).is_ok());
    }
}
