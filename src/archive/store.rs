//! The object store behind `archive_to`: `file:///abs/path` or
//! `s3://bucket/prefix` (credentials, region and endpoint from the standard
//! `AWS_*` variables, so any S3-compatible store works).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::ArchiveError;

/// Where temporary (not yet verified) uploads go, beside the archive.
pub const TMP_PREFIX: &str = "_strata_tmp";

/// Checks an `archive_to` value; returns it normalised.
pub fn validate_url(s: &str) -> Result<String, String> {
    if let Some(path) = s.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "{s:?} is not an absolute file URL; expected \"file:///absolute/path\""
            ));
        }
        if path.split('/').any(|p| p == "..") {
            return Err(format!("{s:?} contains \"..\""));
        }
        return Ok(s.trim_end_matches('/').to_string());
    }
    if let Some(rest) = s.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "{s:?} does not name a valid bucket; expected \"s3://bucket/prefix\" (bucket: 3-63 of a-z 0-9 . -)"
            ));
        }
        return Ok(s.trim_end_matches('/').to_string());
    }
    Err(format!(
        "{s:?} is not a supported location; expected \"file:///absolute/path\" or \"s3://bucket/prefix\""
    ))
}

/// An opened store and the prefix every key lives under.
#[derive(Clone, Debug)]
pub struct Store {
    pub url: String,
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Store {
    pub fn open(url: &str) -> Result<Store, ArchiveError> {
        let url = validate_url(url).map_err(ArchiveError::Usage)?;
        let err = |source| ArchiveError::Store {
            url: url.clone(),
            what: "opening".into(),
            source,
        };
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| {
                ArchiveError::Failed(format!("archive store {url}: creating {dir}: {e}"))
            })?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(err)?;
            return Ok(Store {
                url: url.clone(),
                inner: Arc::new(local),
                prefix: Path::default(),
            });
        }
        let rest = url.strip_prefix("s3://").expect("validated");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        if let Some(ep) = &endpoint {
            builder = builder.with_endpoint(ep);
            // Plain http only to this machine (moto, MinIO on loopback):
            // credentials never cross a network in clear text.
            if is_loopback_http(ep) {
                builder = builder.with_allow_http(true);
            }
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(err)?;
        Ok(Store {
            url: url.clone(),
            inner: Arc::new(s3),
            prefix: Path::from(prefix),
        })
    }

    /// The full key of `rel` (a path relative to the archive prefix).
    pub fn key(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, what: String) -> impl FnOnce(object_store::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Store {
            url: self.url.clone(),
            what,
            source,
        }
    }

    pub async fn put(&self, rel: &str, data: Bytes) -> Result<(), ArchiveError> {
        self.inner
            .put(&self.key(rel), PutPayload::from_bytes(data))
            .await
            .map_err(self.err(format!("writing {rel}")))?;
        Ok(())
    }

    /// `None` when the key does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>, ArchiveError> {
        match self.inner.get(&self.key(rel)).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(self.err(format!("reading {rel}")))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(format!("reading {rel}"))(e)),
        }
    }

    pub async fn copy(&self, from: &str, to: &str) -> Result<(), ArchiveError> {
        self.inner
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(self.err(format!("copying {from} to {to}")))
    }

    pub async fn delete(&self, rel: &str) -> Result<(), ArchiveError> {
        match self.inner.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(format!("deleting {rel}"))(e)),
        }
    }

    /// Keys under `rel`, relative to the archive prefix.
    pub async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, ArchiveError> {
        let base = self.key(rel);
        let mut stream = self.inner.list(Some(&base));
        let mut out = Vec::new();
        let strip = self.prefix.as_ref().len();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(self.err(format!("listing {rel}")))?;
            let full = meta.location.as_ref();
            let relk = full[strip..].trim_start_matches('/').to_string();
            out.push((relk, meta.size));
        }
        Ok(out)
    }
}

fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("file:///var/archive").is_ok());
        assert!(validate_url("file://relative/x").is_err());
        assert!(validate_url("file:///a/../b").is_err());
        assert!(validate_url("s3://my-bucket/audit").is_ok());
        assert!(validate_url("s3://My_Bucket").is_err());
        assert!(validate_url("gs://x").is_err());
        assert!(validate_url("/var/archive").is_err());
    }

    #[test]
    fn http_only_to_loopback() {
        assert!(is_loopback_http("http://127.0.0.1:5000"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://10.0.0.5:9000"));
        assert!(!is_loopback_http("https://s3.amazonaws.com"));
    }
}
