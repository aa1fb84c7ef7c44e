//! ArcSight Common Event Format: one audit record as one CEF line, the body of a syslog
//! message for SIEMs that parse CEF (ArcSight, QRadar, Sentinel). Keys are from the CEF
//! dictionary; what it has no key for goes into labelled custom strings.
use annals_projections::audit::{AuditRecord, Outcome};
use std::fmt::Write;

/// Header fields escape `\` and `|`; a line break would end the record, so it becomes a space.
fn header(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Extension values escape `\` and `=`, and line breaks as `\n` / `\r`.
fn value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn ext(out: &mut String, key: &str, v: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    value(out, v);
}

fn labelled(out: &mut String, key: &str, label: &str, v: Option<&str>) {
    if let Some(v) = v {
        ext(out, &format!("{key}Label"), label);
        ext(out, key, v);
    }
}

/// The record's name: Keycloak's event type, else its admin operation and resource type.
pub fn name(record: &AuditRecord) -> String {
    match (record.r#type, record.operation_type, record.resource_type) {
        (Some(t), _, _) => t.to_string(),
        (None, Some(op), Some(resource)) => format!("{} {resource}", op.as_str()),
        _ => record.annals_type.to_string(),
    }
}

/// `CEF:0|Annals|Annals|VERSION|annals type|name|severity|extensions`.
pub fn encode(record: &AuditRecord) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("CEF:0|Annals|Annals|");
    header(&mut out, env!("CARGO_PKG_VERSION"));
    out.push('|');
    header(&mut out, record.annals_type);
    out.push('|');
    header(&mut out, &name(record));
    let _ = write!(out, "|{}|", record.severity.cef());
    // The first extension has no leading space.
    out.push_str("rt=");
    let _ = write!(out, "{}", record.time);
    ext(&mut out, "externalId", &record.id);
    ext(&mut out, "cn1Label", "position");
    ext(&mut out, "cn1", &record.position.to_string());
    ext(&mut out, "cat", record.kind);
    ext(
        &mut out,
        "outcome",
        match record.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        },
    );
    if let Some(op) = record.operation_type {
        ext(&mut out, "act", op.as_str());
    }
    if let Some(user) = &record.user_id {
        ext(&mut out, "duid", user);
    }
    // `src` must be an address; a malformed one is left out rather than breaking parsers.
    if let Some(addr) = record.ip_address.as_deref().filter(|a| a.parse::<std::net::IpAddr>().is_ok()) {
        ext(&mut out, "src", addr);
    }
    if let Some(error) = &record.error {
        ext(&mut out, "reason", error);
    }
    labelled(&mut out, "cs1", "realm", record.realm_name.as_deref().or(record.realm_id.as_deref()));
    labelled(&mut out, "cs2", "clientId", record.client_id.as_deref());
    labelled(&mut out, "cs3", "sessionId", record.session_id.as_deref());
    labelled(&mut out, "cs4", "stream", Some(&record.stream));
    labelled(&mut out, "cs5", "hash", Some(&record.hash));
    labelled(&mut out, "cs6", "resourcePath", record.resource_path.as_deref());
    labelled(&mut out, "flexString1", "correlationId", record.correlation_id.as_deref());
    if !record.details.is_empty() {
        let details: Vec<String> = record.details.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        ext(&mut out, "msg", &details.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::record;

    #[test]
    fn a_record_becomes_one_cef_line_with_its_position_and_id() {
        // given a failed login record
        let r = record();
        // when it is encoded
        let line = encode(&r);
        // then the header names it and the extensions carry what a SIEM correlates on
        assert!(
            line.starts_with(&format!(
                "CEF:0|Annals|Annals|{}|auth_request.credentials_rejected|LOGIN_ERROR|7|rt=1795000000123 ",
                env!("CARGO_PKG_VERSION")
            )),
            "{line}"
        );
        for part in [
            "externalId=0190aaaa-0000-7000-8000-000000000001",
            "cn1Label=position cn1=42",
            "outcome=failure",
            "duid=u-1",
            "src=192.0.2.7",
            "reason=invalid_user_credentials",
            "cs1Label=realm cs1=demo",
            "cs2Label=clientId cs2=web",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(!line.contains('\n'));
    }

    #[test]
    fn hostile_values_cannot_forge_fields_or_lines() {
        // given values holding CEF's separators and line breaks
        let mut r = record();
        r.client_id = Some("evil=1 outcome=success\nCEF:0|x".into());
        r.error = Some("a\\b|c".into());
        // when encoded
        let line = encode(&r);
        // then they are escaped: one line, one outcome, no new key
        assert!(!line.contains('\n'));
        assert!(line.contains("cs2=evil\\=1 outcome\\=success\\nCEF:0|x"), "{line}");
        assert!(line.contains("reason=a\\\\b|c"), "{line}");
        assert_eq!(line.matches(" outcome=").count(), 1);
    }

    #[test]
    fn an_address_that_is_not_one_is_left_out() {
        let mut r = record();
        r.ip_address = Some("not an address".into());
        assert!(!encode(&r).contains("src="));
    }
}
