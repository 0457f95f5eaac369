//! Watching files: templates and the serving certificate are re-read when
//! their content changes. Polling the content (not inotify on the file) is
//! what survives Kubernetes' `..data` symlink swap in Secret and ConfigMap
//! volumes. A bad new version is rejected and the last good one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::AppState;
use super::tls;
use crate::template::{self, TemplateSet};

pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The bytes of a file, or of every file directly in a directory, for change detection.
fn fingerprint(path: &Path) -> Option<Vec<u8>> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let mut all = Vec::new();
        for p in entries {
            all.extend_from_slice(p.to_string_lossy().as_bytes());
            all.extend(std::fs::read(&p).unwrap_or_default());
        }
        Some(all)
    } else {
        std::fs::read(path).ok()
    }
}

/// Loads the templates at `path` into the state. Returns whether they loaded.
pub(super) fn load_templates(state: &AppState, path: &Path) -> bool {
    let result = template::load_path(path)
        .map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .and_then(|templates| TemplateSet::new(templates).map_err(|e| e.to_string()));
    match result {
        Ok(set) => {
            tracing::info!(path = %path.display(), templates = set.len(), "templates loaded");
            state.set_file_templates(set.all().cloned().collect());
            state.templates_ready.store(true, Ordering::Release);
            state.metrics.template_reload(true);
            true
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "templates rejected; keeping the last good ones");
            state.metrics.template_reload(false);
            false
        }
    }
}

/// Loads the certificate pair into the state. Returns whether it loaded.
pub(super) fn load_certificate(state: &AppState, cert: &Path, key: &Path) -> bool {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let result = read(cert).and_then(|c| {
        let k = read(key)?;
        tls::load_pair(&c, &k).map_err(|e| e.to_string())
    });
    match result {
        Ok(loaded) => {
            tracing::info!(cert = %cert.display(), not_after = loaded.not_after, "certificate loaded");
            state.certs.set(loaded.key);
            state.metrics.certificate_expiry.set(loaded.not_after);
            state.metrics.certificate_reload(true);
            true
        }
        Err(e) => {
            tracing::error!(cert = %cert.display(), error = %e, "certificate rejected; keeping the current one");
            state.metrics.certificate_reload(false);
            false
        }
    }
}

/// Reads and parses the client CA bundle at `path`.
pub(super) fn read_client_ca(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    tls::load_client_ca(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Re-reads the client CA into `store`. Returns whether it loaded; a bad
/// file keeps the CA in force.
pub(super) fn load_client_ca(state: &AppState, store: &tls::ClientCaStore, path: &Path) -> bool {
    match read_client_ca(path) {
        Ok(verifier) => {
            tracing::info!(path = %path.display(), "client CA loaded");
            store.set(verifier);
            state.metrics.client_ca_reload(true);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "client CA rejected; keeping the current one");
            state.metrics.client_ca_reload(false);
            false
        }
    }
}

/// Polls `paths` and calls `load` when their content changes (and at start).
pub(super) async fn watch(paths: Vec<PathBuf>, mut load: impl FnMut() -> bool) {
    let snapshot = |paths: &[PathBuf]| paths.iter().map(|p| fingerprint(p)).collect::<Vec<_>>();
    let mut last = None;
    loop {
        let now = snapshot(&paths);
        if last.as_ref() != Some(&now) {
            // A failed load is retried only after the files change again, so a
            // broken file is reported once, not every second.
            load();
            last = Some(now);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
