//! `annals trace-token TOKEN_OR_JTI`: which login, client and session produced a token, every
//! refresh after it, and whether and when it was revoked.
//!
//! A token (a JWT: its claims are read, not trusted; only the log answers) names its session
//! (`sid`) or is a client-credentials token whose grant stream is its `jti`: both are read
//! directly. A bare id without a session is looked for in the log's token issuances, page by
//! page (no index is kept on every issuance: the token endpoint's write path stays lean).
use super::activity::{Activity, TokenLife};
use crate::store::{ReadUntil, SharedStore, StoreError};
use annals_events::auth_request::AuthRequestEvent;
use annals_events::{DomainEvent, RecordedEvent, StreamId, StreamType};
use annals_projections::Directory;
use base64::Engine;
use chrono::DateTime;
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {0} cannot be decoded: {1}")]
    Decode(u64, String),
    #[error("no token with id {0:?} was ever issued, as far as the log says")]
    Unknown(String),
    #[error("not a JWT and not a token id")]
    Malformed,
}

/// The token id and session a token or id names.
fn ids(input: &str) -> Result<(String, Option<String>), TraceError> {
    let input = input.trim();
    let parts: Vec<&str> = input.split('.').collect();
    if parts.len() == 3 {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .ok_or(TraceError::Malformed)?;
        let jti = claims["jti"].as_str().ok_or(TraceError::Malformed)?.to_string();
        // An offline session's tokens are recorded there, not in the SSO session `sid` names.
        return Ok((jti, crate::oidc::tokens::session_stream(&claims).map(String::from)));
    }
    let plain = !input.is_empty() && input.len() <= 256 && input.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        Ok((input.to_string(), None))
    } else {
        Err(TraceError::Malformed)
    }
}

/// The stream that issued `jti`.
async fn issuing_stream(store: &SharedStore, jti: &str, sid: Option<&str>) -> Result<StreamId, TraceError> {
    if let Some(sid) = sid {
        return Ok(StreamId::new(StreamType::Session, sid));
    }
    let grant = StreamId::new(StreamType::ClientGrant, jti);
    if !store.read_stream(&grant, 0, ReadUntil::Version(1)).await?.is_empty() {
        return Ok(grant);
    }
    let mut after = 0;
    loop {
        let page = store.read_all_payloads(after, 5_000).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        let found = page.iter().find(|e| e.event_type == "session.tokens_issued" && e.payload.contains(jti));
        if let Some(e) = found {
            return Ok(e.stream.clone());
        }
        after = last;
    }
    Err(TraceError::Unknown(jti.to_string()))
}

fn decode(e: &RecordedEvent) -> Result<DomainEvent, TraceError> {
    e.decode().map_err(|err| TraceError::Decode(e.position, err.to_string()))
}

fn time(s: i64) -> String {
    DateTime::from_timestamp(s, 0).map_or_else(|| s.to_string(), |d| d.to_rfc3339())
}

pub async fn trace(store: &SharedStore, input: &str) -> Result<String, TraceError> {
    let (jti, sid) = ids(input)?;
    let stream = issuing_stream(store, &jti, sid.as_deref()).await?;
    let events = store.read_stream(&stream, 0, ReadUntil::End).await?;
    let mut activity = Activity::default();
    for e in &events {
        activity.apply(e, &decode(e)?);
    }
    let token: TokenLife = activity.tokens.get(&jti).cloned().ok_or_else(|| TraceError::Unknown(jti.clone()))?;
    let mut dir = Directory::default();
    for e in store.read_directory().await? {
        dir.fold(&e).map_err(|err| TraceError::Decode(e.position, err.to_string()))?;
    }
    let client = |id: &str| dir.clients.get(id).map_or_else(|| id.to_string(), |c| c.client_id.clone());
    let realm = token.realm_id.as_deref().map(|r| dir.realms.get(r).map_or_else(|| r.to_string(), |v| v.name.clone()));
    let mut out =
        format!("{} token {}{}\n", token.kind, token.id, realm.map(|r| format!(" of realm {r}")).unwrap_or_default());
    let _ = writeln!(
        out,
        "issued   {} #{} to client {} by grant {} (scope {})",
        time(token.issued_at),
        token.issued_position,
        client(&token.client),
        token.grant,
        token.scope
    );
    if let Some(s) = token.session.as_ref().and_then(|s| activity.sessions.get(s)) {
        let user = crate::sqlmodels::users::get(&store.pool(), &s.user_id)
            .await
            .ok()
            .flatten()
            .map_or_else(|| s.user_id.clone(), |u| format!("{} ({})", u.username, u.id));
        let _ = writeln!(
            out,
            "session  {} started {} #{} for user {user} by {}",
            s.id,
            time(s.auth_time),
            s.started_position,
            s.method
        );
        // The login: the authorization request that authenticated into this session.
        let requests: Vec<StreamId> = store
            .streams_naming_user(&s.user_id)
            .await?
            .into_iter()
            .filter(|st| st.kind == StreamType::AuthRequest)
            .collect();
        let from = DateTime::from_timestamp(s.auth_time - 3_600, 0).unwrap_or_default();
        let to = DateTime::from_timestamp(s.auth_time + 3_600, 0).unwrap_or_default();
        for e in store.read_streams_between(&requests, from, to).await? {
            if let Ok(DomainEvent::AuthRequest(AuthRequestEvent::Authenticated(a))) = e.decode() {
                if a.session_id == s.id {
                    let ip = serde_json::from_str::<serde_json::Value>(&e.metadata)
                        .ok()
                        .and_then(|m| m["source_ip"].as_str().map(String::from))
                        .unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        out,
                        "login    {} #{} authorization request {} ({}) from {ip}",
                        e.recorded_at.to_rfc3339(),
                        e.position,
                        e.stream.id,
                        a.method
                    );
                }
            }
        }
    }
    // The refresh chain the token belongs to: its own, or the refresh token issued with it.
    let chain_start = if token.kind == "refresh" {
        Some(token.id.clone())
    } else {
        activity
            .tokens
            .values()
            .find(|t| t.kind == "refresh" && t.issued_position == token.issued_position)
            .map(|t| t.id.clone())
    };
    let rotations = chain_start.as_deref().map(|r| activity.rotations_after(r)).unwrap_or_default();
    let _ = writeln!(out, "refreshes after it: {}", rotations.len());
    for r in &rotations {
        let access = activity.tokens.values().find(|t| t.kind == "access" && t.issued_position == r.issued_position);
        let _ = writeln!(
            out,
            "  {} #{} refresh token {} replaces {}{}",
            time(r.issued_at),
            r.issued_position,
            r.id,
            r.replaces.as_deref().unwrap_or("-"),
            access.map(|a| format!(", access token {}", a.id)).unwrap_or_default()
        );
    }
    let status = match (&token.revoked, token.replaced_by.as_ref()) {
        (Some(r), _) => format!("revoked {} #{} ({})", time(r.at), r.position, r.reason),
        (None, Some(next)) => format!("rotated away: replaced by refresh token {next}"),
        (None, None) => match token.expires_at {
            Some(exp) if exp <= chrono::Utc::now().timestamp() => format!("not revoked; expired {}", time(exp)),
            Some(exp) => format!("not revoked; expires {}", time(exp)),
            None => "not revoked; lives as long as its session".into(),
        },
    };
    let _ = writeln!(out, "status   {status}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_gives_its_id_and_session_and_a_bare_id_itself() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"jti":"t-1","sid":"s-1"}"#);
        assert_eq!(ids(&format!("h.{claims}.sig")).unwrap(), ("t-1".into(), Some("s-1".into())));
        assert_eq!(ids(" 0190-abc \n").unwrap(), ("0190-abc".into(), None));
        for bad in ["h.bm90IGpzb24.s", "", "two words", &"x".repeat(300)] {
            assert!(matches!(ids(bad), Err(TraceError::Malformed)), "{bad}");
        }
    }
}
