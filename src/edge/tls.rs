//! TLS with rustls: the server side on the proxy port (reloadable without a restart), and the
//! client side toward the target for `--ssl-target`.
//!
//! The server's certificate is re-read on SIGHUP and whenever its files change on disk: the
//! files are polled (size, modification time, inode, following symlinks), which also catches
//! Kubernetes and cert-manager swapping a Secret's symlinks, where inotify on the file would
//! not. A new file that does not load leaves the previous certificate in place. New handshakes
//! use the new certificate; running sessions keep theirs.
//!
//! Reloads, and the poll's stat calls, run on tokio's blocking pool: reading the files,
//! decrypting a key and loading the system's roots can take long (a file on NFS or FUSE, a key
//! file that is a FIFO nobody writes), and on a one-CPU machine the runtime is one thread.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{SslVersion, TlsFiles};
use crate::process::shutdown::Shutdown;

/// How often the certificate files are checked for changes. cert-manager renews days before
/// expiry, so seconds of delay cost nothing, and a stat of three files is cheap.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS configuration, swapped whole when the files change.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// What the files looked like when `current` was built.
    stamp: Mutex<Vec<Stamp>>,
    /// Held for a whole reload: SIGHUP and the poll never interleave, so the configuration
    /// installed last is built from the files seen last.
    reloading: Mutex<()>,
}

/// Enough of a file's metadata to notice that it was replaced or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

impl ServerTls {
    /// Loads the certificate when there is one to load: `None` when websockify's default
    /// `self.pem` is absent and TLS was not asked for (then the proxy speaks plain only).
    pub fn load(files: &TlsFiles) -> anyhow::Result<Option<Arc<ServerTls>>> {
        if files.cert_is_default && !files.cert.exists() {
            if files.ssl_only {
                bail!(
                    "--ssl-only needs a certificate: {} not found (give --cert)",
                    files.cert.display()
                );
            }
            if files.verify_client.is_some() {
                bail!("--verify-client needs a certificate: give --cert");
            }
            return Ok(None);
        }
        let config = build(files)?;
        let tls = ServerTls {
            files: files.clone(),
            current: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamps(files)),
            reloading: Mutex::new(()),
        };
        Ok(Some(Arc::new(tls)))
    }

    /// The acceptor for one new connection, with the certificate in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Re-reads the files; on failure the previous configuration stays and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = stamps(&self.files);
        let config = build(&self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
        if let Ok(mut s) = self.stamp.lock() {
            *s = seen;
        }
        Ok(())
    }

    /// Reloads whenever the files change, until shutdown. Each check (a stat per file, and
    /// the reload when one changed) runs on the blocking pool: a stat can wait as long as a
    /// read on a network file system, and one hop every [`RELOAD_POLL`] costs nothing. The
    /// next check waits for this one, so a hung file system holds one blocking thread, not
    /// one per poll.
    pub async fn watch(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELOAD_POLL) => {}
                () = shutdown.recv() => return,
            }
            let tls = Arc::clone(&self);
            let check = tokio::task::spawn_blocking(move || {
                let now = stamps(&tls.files);
                let changed = tls.stamp.lock().map(|s| *s != now).unwrap_or(true);
                if changed {
                    tls.reload_and_log("certificate files changed");
                }
            });
            tokio::select! {
                checked = check => {
                    if let Err(e) = checked {
                        tracing::warn!("checking the certificate files failed: {e}");
                    }
                }
                () = shutdown.recv() => return,
            }
        }
    }

    /// Reloads on tokio's blocking pool, off the async workers, and logs the outcome as the
    /// poll does (`{why}: TLS certificate reloaded`, or why not); what SIGHUP calls. The
    /// handle resolves when the reload is done; nobody needs to wait for it.
    pub fn reload_in_background(self: &Arc<Self>, why: &'static str) -> JoinHandle<()> {
        let tls = Arc::clone(self);
        tokio::task::spawn_blocking(move || tls.reload_and_log(why))
    }

    /// Reloads and logs the outcome; blocks (see the module doc), so only on the blocking
    /// pool.
    fn reload_and_log(&self, why: &str) {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reloaded = self.reload();
        crate::telemetry::metrics::get().reload("certificate", reloaded.is_ok());
        match reloaded {
            Ok(()) => tracing::info!("{why}: TLS certificate reloaded"),
            Err(e) => {
                // Remember the broken files so that we do not retry every poll; a fix changes
                // them again.
                if let Ok(mut s) = self.stamp.lock() {
                    *s = stamps(&self.files);
                }
                tracing::warn!("{why}: TLS reload failed, keeping the previous certificate: {e:#}")
            }
        }
    }

    pub fn ssl_only(&self) -> bool {
        self.files.ssl_only
    }
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    let mut paths: Vec<&Path> = vec![&files.cert];
    paths.extend(files.key.as_deref());
    if let Some(Some(ca)) = &files.verify_client {
        paths.push(ca);
    }
    paths
        .into_iter()
        .map(|p| {
            stamp(p).unwrap_or(Stamp {
                len: 0,
                modified: None,
                inode: 0,
            })
        })
        .collect()
}

/// The crypto provider restricted to the allowed cipher suites.
fn provider(ciphers: Option<&str>) -> anyhow::Result<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(spec) = ciphers {
        provider.cipher_suites = cipher_suites(&provider.cipher_suites, spec)?;
    }
    Ok(provider)
}

fn build(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let certs = load_certs(&files.cert)?;
    let key_path = files.key.as_deref().unwrap_or(&files.cert);
    let key = load_key(key_path, files.key_password.as_ref().map(|p| p.expose()))?;
    let provider = Arc::new(provider(files.ciphers.as_deref())?);
    let versions = versions(files.min_version, &provider.cipher_suites)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("TLS versions and cipher suites do not fit together")?;
    let builder = match &files.verify_client {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots(ca.as_deref())?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("--verify-client")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checked here because a rotation that replaces the key and the certificate one after the
    // other is briefly inconsistent, and serving that pair would fail every handshake.
    CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).with_context(|| {
        format!(
            "certificate {} and key {} do not match",
            files.cert.display(),
            key_path.display()
        )
    })?;
    let mut config = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("certificate {}", files.cert.display()))?;
    // HTTP/2 first when it is on (browsers then carry WebSockets on it, RFC 8441), and
    // HTTP/1.1, which every WebSocket client can fall back to.
    config.alpn_protocols = if files.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The protocol versions from `--ssl-version`, keeping only those some allowed suite serves.
fn versions(
    min: SslVersion,
    suites: &[SupportedCipherSuite],
) -> anyhow::Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    let wanted: &[&'static rustls::SupportedProtocolVersion] = match min {
        SslVersion::Default | SslVersion::Tlsv1_1 | SslVersion::Tlsv1_2 => {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
        SslVersion::Tlsv1_3 => &[&rustls::version::TLS13],
    };
    let served: Vec<_> = wanted
        .iter()
        .copied()
        .filter(|v| suites.iter().any(|s| s.version() == *v))
        .collect();
    if served.is_empty() {
        bail!("--ssl-ciphers leaves no cipher suite for the TLS versions --ssl-version allows");
    }
    Ok(served)
}

/// OpenSSL's names for the suites rustls implements, and the IANA names they stand for.
const OPENSSL_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

fn suite_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

/// Maps an OpenSSL-style list (`A:B`, commas and spaces also separate) to rustls suites; a
/// name we cannot honour is an error naming it. As with OpenSSL's `set_ciphers`, a list that
/// names no TLS 1.3 suite leaves TLS 1.3's suites as they are.
fn cipher_suites(
    available: &[SupportedCipherSuite],
    spec: &str,
) -> anyhow::Result<Vec<SupportedCipherSuite>> {
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in spec.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
        let iana = OPENSSL_NAMES
            .iter()
            .find(|(openssl, _)| openssl.eq_ignore_ascii_case(name))
            .map(|(_, iana)| (*iana).to_string())
            .unwrap_or_else(|| name.to_ascii_uppercase());
        let found = available.iter().find(|s| {
            let n = suite_name(s);
            n == iana || n == iana.replacen("TLS_AES", "TLS13_AES", 1)
        });
        match found {
            Some(s) if !chosen.iter().any(|c| c.suite() == s.suite()) => chosen.push(*s),
            Some(_) => {}
            None => {
                let known: Vec<&str> = OPENSSL_NAMES.iter().map(|(o, _)| *o).collect();
                bail!(
                    "--ssl-ciphers: `{name}` is not a cipher suite this server can use; \
                     use these OpenSSL names (or their IANA names): {}",
                    known.join(":")
                );
            }
        }
    }
    if chosen.is_empty() {
        bail!("--ssl-ciphers names no cipher suite");
    }
    if !chosen
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13)
    {
        chosen.extend(
            available
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13),
        );
    }
    Ok(chosen)
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in certificate {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// The private key: plain PEM (PKCS#8, PKCS#1 or SEC1), or an encrypted PKCS#8 key opened
/// with `--key-password`.
fn load_key(path: &Path, password: Option<&str>) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))?;
    const ENCRYPTED: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    let text = String::from_utf8_lossy(&pem);
    if let Some(start) = text.find(ENCRYPTED) {
        let Some(password) = password else {
            bail!("key {} is encrypted: give --key-password", path.display());
        };
        let end_marker = "-----END ENCRYPTED PRIVATE KEY-----";
        let end = text[start..]
            .find(end_marker)
            .map(|i| start + i + end_marker.len())
            .with_context(|| format!("unterminated encrypted key in {}", path.display()))?;
        let (_, der) = pkcs8::der::pem::decode_vec(text[start..end].as_bytes())
            .map_err(|e| anyhow::anyhow!("bad encrypted key PEM in {}: {e}", path.display()))?;
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| anyhow::anyhow!("bad encrypted key in {}: {e}", path.display()))?;
        let plain = info.decrypt(password).map_err(|_| {
            anyhow::anyhow!(
                "cannot decrypt key {}: wrong --key-password or unsupported encryption",
                path.display()
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        bail!(
            "key {} uses legacy OpenSSL encryption; convert it to PKCS#8 \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc)",
            path.display()
        );
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow::anyhow!("no private key in {}: {e}", path.display()))
}

/// Trust roots: a CA file, or the system's certificates.
fn roots(ca: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("bad CA certificate in {}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unusable system certificate must not disable all the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                bail!("no system CA certificates found; give a CA file");
            }
        }
    }
    Ok(roots)
}

/// The client configuration for `--ssl-target`.
pub fn client_config(ca: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let roots = roots(ca)?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS client")?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The subject common name of a verified client certificate (the first in the chain).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_and_iana_cipher_names() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let chosen = cipher_suites(
            &all,
            "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        )
        .unwrap();
        let names: Vec<String> = chosen.iter().map(suite_name).collect();
        assert_eq!(names[0], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(names[1], "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
        // No TLS 1.3 name given: TLS 1.3 suites stay, as with OpenSSL's set_ciphers.
        assert!(names.iter().any(|n| n.starts_with("TLS13_")));
        let only13 = cipher_suites(&all, "TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(only13.len(), 1);
        let err = cipher_suites(&all, "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA").unwrap_err();
        assert!(err.to_string().contains("`AES128-SHA`"), "{err}");
        assert!(cipher_suites(&all, "HIGH:!aNULL").is_err());
        assert!(cipher_suites(&all, "::").is_err());
    }

    #[test]
    fn versions_follow_ssl_version_and_suites() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(versions(SslVersion::Default, &all).unwrap().len(), 2);
        assert_eq!(versions(SslVersion::Tlsv1_1, &all).unwrap().len(), 2);
        let v = versions(SslVersion::Tlsv1_3, &all).unwrap();
        assert_eq!(v, [&rustls::version::TLS13]);
        let only12 = cipher_suites(&all, "ECDHE-RSA-AES128-GCM-SHA256").unwrap();
        let only12: Vec<_> = only12
            .into_iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert!(versions(SslVersion::Tlsv1_3, &only12).is_err());
    }
}
