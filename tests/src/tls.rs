//! A certificate for the edge's HTTPS listener, made when a stack starts
//! (rcgen; no openssl): a CA of the stack's own and a server certificate for
//! `localhost` and `127.0.0.1` signed by it. Clients trust the CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// The files of an edge certificate.
#[derive(Clone, Debug)]
pub struct EdgeCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed it, PEM (what a client trusts).
    pub ca_pem: String,
    pub ca: PathBuf,
}

/// Makes a CA and a `localhost` (and `*.example.test`, `app-one.test`, `app-two.test`) server
/// certificate in `dir`, or takes the
/// ones made there before (a browser that trusts the demo's CA keeps
/// trusting it across `make run`s).
pub fn edge_certificate(dir: &Path) -> EdgeCertificate {
    let files = |ca_pem: String| EdgeCertificate {
        cert: dir.join("edge-cert.pem"),
        key: dir.join("edge-key.pem"),
        ca_pem,
        ca: dir.join("edge-ca.pem"),
    };
    if let Ok(ca_pem) = std::fs::read_to_string(dir.join("edge-ca.pem")) {
        let made = files(ca_pem);
        if made.cert.exists() && made.key.exists() {
            return made;
        }
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portero demo CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    // `*.example.test`: the sibling hosts of the single sign-on checks
    // (a browser maps them to loopback).
    // `app-one.test`, `app-two.test`: apps on unrelated domains, signed in
    // through the OIDC provider.
    let names = vec![
        "localhost".to_string(),
        "*.example.test".to_string(),
        "app-one.test".to_string(),
        "app-two.test".to_string(),
    ];
    let mut params = CertificateParams::new(names).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let key = KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let files = files(ca.pem());
    std::fs::write(&files.cert, cert.pem()).expect("edge-cert.pem");
    std::fs::write(&files.key, key.serialize_pem()).expect("edge-key.pem");
    std::fs::write(&files.ca, ca.pem()).expect("edge-ca.pem");
    files
}

/// Adds an HTTPS listener on `port` beside the plain one: the same
/// connection manager, routes and filters, behind TLS (h2 and HTTP/1.1).
pub fn with_tls_listener(yaml: &str, plain_port: u16, port: u16, cert: &EdgeCertificate) -> String {
    let start = yaml
        .find("  - name: ingress\n")
        .expect("the ingress listener");
    let end = yaml.find("\n  clusters:\n").expect("the clusters");
    let listener = &yaml[start..end];
    let tls = format!(
        "    filter_chains:\n    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          common_tls_context:\n            alpn_protocols: [\"h2\", \"http/1.1\"]\n            tls_certificates:\n            - certificate_chain: {{ filename: \"{}\" }}\n              private_key: {{ filename: \"{}\" }}\n      filters:\n",
        cert.cert.display(),
        cert.key.display()
    );
    let copy = listener
        .replacen("  - name: ingress\n", "  - name: ingress_tls\n", 1)
        .replacen(
            &format!("port_value: {plain_port} }}"),
            &format!("port_value: {port} }}"),
            1,
        )
        .replacen("    filter_chains:\n    - filters:\n", &tls, 1);
    assert!(copy.contains("ingress_tls") && copy.contains("DownstreamTlsContext"));
    format!("{}\n{copy}{}", &yaml[..end], &yaml[end..])
}

/// A client that trusts only the CA in `ca_pem` (the edge certificate's).
pub(crate) fn agent_trusting(ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(ca_pem.as_bytes())
        .expect("the CA in PEM")
        .to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(std::sync::Arc::new(vec![ca])))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}
