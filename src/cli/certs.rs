//! `tandem certs`: a private CA and a serving certificate for the webhook
//! Service, for installs without cert-manager (`deploy/overlays/self-signed`).
//!
//! Writes `ca.crt`, `tls.crt` and `tls.key` (ECDSA P-256) and prints the
//! base64 `caBundle` on stdout. The CA's private key is never written: it
//! signs the one serving certificate and is dropped, so no CA key can leak from
//! the output directory. Rotation therefore always means a new CA (see
//! `deploy/overlays/self-signed/README.md`).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::CliError;
use crate::facts::is_dns_label;

/// Longest validity `--days` accepts.
pub(super) const MAX_DAYS: u32 = 3650;

/// Files written, in order.
pub(super) const FILES: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

#[derive(Args, Debug, Clone)]
pub struct CertsArgs {
    /// Service in front of Tandem (the certificate's DNS names are built from it).
    #[arg(long, default_value = "tandem")]
    pub service: String,
    /// Namespace of the Service (Tandem's own namespace).
    #[arg(long, default_value = "tandem-system")]
    pub namespace: String,
    /// Directory for ca.crt, tls.crt and tls.key; created (mode 0700) when missing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Validity of the CA and of the serving certificate, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS as i64))]
    pub days: u32,
    /// Overwrite ca.crt, tls.crt and tls.key when they exist (a new CA: update caBundle too).
    #[arg(long)]
    pub force: bool,
}

/// A Kubernetes DNS-1123 label: what Service and Namespace names are.
fn check_label(what: &str, value: &str) -> Result<(), CliError> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--{what} {value:?} is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63)"
        )))
    }
}

/// The names the API server may use to reach the Service.
pub(super) fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// The generated PEM files.
struct Generated {
    ca_pem: String,
    tls_pem: String,
    key_pem: String,
    /// `YYYY-MM-DD` of the shared notAfter.
    not_after: String,
}

fn generate(args: &CertsArgs) -> Result<Generated, rcgen::Error> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // rcgen takes `time` values; build them from the Unix epoch so this crate
    // needs no direct `time` dependency. Whole seconds, as X.509 stores them.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = epoch + Duration::from_secs(since_epoch);
    // A little slack for API servers whose clock is behind ours.
    let not_before = epoch + Duration::from_secs(since_epoch.saturating_sub(300));
    let not_after = now + Duration::from_secs(u64::from(args.days) * 86_400);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{} webhook CA", args.service, args.namespace),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "tandem");
    // Signs serving certificates only, never another CA.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let names = dns_names(&args.service, &args.namespace);
    let mut params = CertificateParams::new(names.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[2].clone());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &ca)?;

    Ok(Generated {
        ca_pem: ca.pem(),
        tls_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: format!(
            "{:04}-{:02}-{:02}",
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day()
        ),
    })
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> CliError {
    CliError::Input {
        path: path.display().to_string(),
        message: format!("cannot {what}: {e}"),
    }
}

/// Creates `path` with `mode`; an existing file is replaced only with `force`.
/// `create_new` never follows a symlink planted at `path`.
fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), CliError> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, "replace", e)),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(path, "create", e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, "write", e))
}

pub(super) fn run(args: &CertsArgs) -> Result<(), CliError> {
    check_label("service", &args.service)?;
    check_label("namespace", &args.namespace)?;
    let dir = &args.out_dir;
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();

    // Refuse before generating anything, naming every file in the way.
    if !args.force {
        let existing: Vec<String> = paths
            .iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(CliError::Failed(format!(
                "refusing to overwrite {}; pass --force to replace them (a new CA: \
                 caBundle must then be updated in both webhook configurations)",
                existing.join(", ")
            )));
        }
    }
    if !dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, "create the directory", e))?;
    }

    let generated = generate(args)
        .map_err(|e| CliError::Failed(format!("cannot generate the certificates: {e}")))?;
    write_file(&paths[0], &generated.ca_pem, 0o644, args.force)?;
    write_file(&paths[1], &generated.tls_pem, 0o644, args.force)?;
    write_file(&paths[2], &generated.key_pem, 0o600, args.force)?;

    let ca_bundle = base64_simd::STANDARD.encode_to_string(generated.ca_pem.as_bytes());
    println!("{ca_bundle}");

    let d = |f: &str| dir.join(f).display().to_string();
    let (ca, crt, key) = (d("ca.crt"), d("tls.crt"), d("tls.key"));
    let ns = &args.namespace;
    eprintln!(
        "tandem: wrote {ca} (CA), {crt} and {key} (mode 0600), ECDSA P-256, valid {days} days (until {until} UTC)
  serving certificate for: {names}
  stdout: the caBundle (base64 of {ca})

Next (deploy/overlays/self-signed/README.md):
  kubectl create namespace {ns} --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n {ns} create secret tls tandem-tls --cert={crt} --key={key}
  kubectl apply -k deploy/overlays/self-signed
  CA_BUNDLE=\"$(base64 < {ca} | tr -d '\\n')\"
  for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
    kubectl patch $kind tandem --type=json \\
      -p \"[{{\\\"op\\\":\\\"add\\\",\\\"path\\\":\\\"/webhooks/0/clientConfig/caBundle\\\",\\\"value\\\":\\\"${{CA_BUNDLE}}\\\"}}]\"
  done

{key} is a private key: keep it out of version control. The CA key is not kept;
to rotate, run `tandem certs` again into a new directory and follow the README's \"Rotate\".",
        days = args.days,
        until = generated.not_after,
        names = dns_names(&args.service, ns).join(", "),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_label("service", "tandem").is_ok());
        assert!(check_label("namespace", "tandem-system").is_ok());
        for bad in ["", "Tandem", "-x", "x-", "a.b", &"a".repeat(64)] {
            assert!(check_label("service", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dns_names_cover_every_service_form() {
        assert_eq!(
            dns_names("tandem", "tandem-system"),
            [
                "tandem",
                "tandem.tandem-system",
                "tandem.tandem-system.svc",
                "tandem.tandem-system.svc.cluster.local"
            ]
        );
    }
}
