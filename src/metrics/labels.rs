//! The fixed label values: status classes and TLS failure reasons.

/// Status classes used as the `class` label.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index of a status code's class in [`CLASSES`].
#[inline]
pub(crate) fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Why a TLS handshake with a backend failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsReason {
    /// The backend's certificate (or one in its chain) has expired or is not yet valid.
    Expired,
    /// The backend's certificate is not signed by a trusted CA.
    UnknownCa,
    /// The certificate is not valid for the name checked (`server_name` or the URL's host).
    NameMismatch,
    /// Anything else: the backend refused our client certificate, no common
    /// protocol, not TLS at all, the connection closed mid-handshake, ….
    Handshake,
}

impl TlsReason {
    /// Every reason, in the order of [`BackendMetrics::tls_handshake_failures`](super::BackendMetrics::tls_handshake_failures).
    pub(crate) const ALL: [TlsReason; 4] = [
        TlsReason::Expired,
        TlsReason::UnknownCa,
        TlsReason::NameMismatch,
        TlsReason::Handshake,
    ];

    /// The `reason` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            TlsReason::Expired => "expired",
            TlsReason::UnknownCa => "unknown_ca",
            TlsReason::NameMismatch => "name_mismatch",
            TlsReason::Handshake => "handshake",
        }
    }
}

impl std::fmt::Display for TlsReason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.label())
    }
}
