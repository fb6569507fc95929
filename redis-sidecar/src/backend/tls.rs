//! TLS to Redis (`rediss://`, or Sentinel with a CA): rustls with ring as
//! its crypto provider, trusting the CA certificates given instead of the
//! system's roots.

use redis::TlsCertificates;

use super::RedisConnect;

/// The certificates to trust, when a CA was given. Installs the crypto
/// provider first: every client is built after this.
pub(super) fn certificates(connect: &RedisConnect) -> Option<TlsCertificates> {
    // rustls needs a crypto provider; a second install is refused, harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    connect.tls_ca.as_ref().map(|ca| TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.clone()),
    })
}
