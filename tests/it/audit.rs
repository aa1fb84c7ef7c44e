//! The audit stream over HTTP: a realm's logins, token grants, failures and configuration
//! changes as Keycloak-named records in log order, resumable by position, for callers with
//! `view-events` or a `master` administrator only, with no secret in any record.
use crate::oidc_flow::{alice_code, authorize, code_request, redeem, Demo, Jar, RP};
use crate::support::ADMIN_PASSWORD;
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

/// The demo realm with Keycloak's `realm-management` client, its `view-events` role, and an
/// `auditor` holding it.
async fn demo_with_auditor() -> Demo {
    Demo::start_with(add_auditor).await
}

pub(crate) fn add_auditor(realm: &mut Value) {
    realm["roles"]["client"]["realm-management"] = json!([{ "name": "view-events" }]);
    realm["clients"].as_array_mut().unwrap().push(json!({ "clientId": "realm-management", "bearerOnly": true }));
    realm["users"].as_array_mut().unwrap().push(json!({
        "username": "auditor",
        "enabled": true,
        "credentials": [{ "type": "password", "value": "auditor-password" }],
        "clientRoles": { "realm-management": ["view-events"] }
    }));
}

pub(crate) async fn password_token(
    demo: &Demo,
    realm: &str,
    client: (&str, Option<&str>),
    user: (&str, &str),
) -> String {
    let url = format!("{}/realms/{realm}/protocol/openid-connect/token", demo.app.base_url);
    let mut form =
        vec![("grant_type", "password"), ("client_id", client.0), ("username", user.0), ("password", user.1)];
    if let Some(secret) = client.1 {
        form.push(("client_secret", secret));
    }
    let res = demo.http.post(url).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 200, "password grant for {}", user.0);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// GET the demo realm's audit pull; (status, records, position header).
pub(crate) async fn pull(demo: &Demo, token: Option<&str>, query: &str) -> (u16, Vec<Value>, Option<u64>) {
    pull_realm(demo, "demo", token, query).await
}

async fn pull_realm(demo: &Demo, realm: &str, token: Option<&str>, query: &str) -> (u16, Vec<Value>, Option<u64>) {
    let mut req = demo.http.get(format!("{}/admin/realms/{realm}/audit{query}", demo.app.base_url));
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let position = res.headers().get("annals-audit-position").and_then(|v| v.to_str().ok()?.parse().ok());
    let text = res.text().await.unwrap();
    let records = if status == 200 {
        text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON record")).collect()
    } else {
        vec![]
    };
    (status, records, position)
}

fn types(records: &[Value]) -> Vec<&str> {
    records.iter().filter_map(|r| r["type"].as_str()).collect()
}

#[actix_rt::test]
async fn the_audit_pull_reports_a_realms_security_facts_in_order_to_authorized_callers_only() {
    let demo = demo_with_auditor().await;
    // given a failed login, a login with a code redeemed and refreshed, and a client grant
    let mut jar = Jar::default();
    authorize(&demo, &mut jar, &code_request("web", RP), Some(("alice", "wrong"))).await;
    let code = alice_code(&demo, &mut jar).await;
    let (status, tokens) = redeem(&demo, &code).await;
    assert_eq!(status, 200);
    let (status, _) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = demo.token(("svc", "svc-secret-0123456789"), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200);

    // when nobody, alice (no role), the realm's auditor and master's administrator ask
    let (status, _, _) = pull(&demo, None, "").await;
    assert_eq!(status, 401);
    let (status, _, _) = pull(&demo, Some("not-a-token"), "").await;
    assert_eq!(status, 401);
    let alice =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("alice", "alice-password")).await;
    let (status, _, _) = pull(&demo, Some(&alice), "").await;
    assert_eq!(status, 403, "a user without view-events");
    let auditor =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    let (status, by_auditor, _) = pull(&demo, Some(&auditor), "").await;
    assert_eq!(status, 200);
    let admin = password_token(&demo, "master", ("admin-cli", None), ("admin", ADMIN_PASSWORD)).await;
    let (status, records, position) = pull(&demo, Some(&admin), "").await;
    assert_eq!(status, 200);

    // then both see the realm's records, in log order, each of the realm
    assert!(records.len() >= by_auditor.len() && !records.is_empty());
    let positions: Vec<u64> = records.iter().map(|r| r["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "log order: {positions:?}");
    // the header names the last position examined: past the demo realm's last record here,
    // since the administrator's own login (in master) came after it
    assert!(position.unwrap() > *positions.last().unwrap(), "{position:?}");
    assert!(records.iter().all(|r| r["realmName"] == "demo"), "only the demo realm's records");
    // the import is there as admin events with Keycloak's resource types and paths
    let created_client = records
        .iter()
        .find(|r| r["kind"] == "admin" && r["resourceType"] == "CLIENT" && r["operationType"] == "CREATE")
        .expect("client creation recorded");
    assert!(created_client["resourcePath"].as_str().unwrap().starts_with("clients/"));
    // the flow, named as Keycloak names it, in the order it happened
    let seen = types(&records);
    let order: Vec<&str> = seen
        .iter()
        .copied()
        .filter(|t| ["LOGIN_ERROR", "LOGIN", "CODE_TO_TOKEN", "REFRESH_TOKEN", "CLIENT_LOGIN"].contains(t))
        .collect();
    assert_eq!(order[..5], ["LOGIN_ERROR", "LOGIN", "CODE_TO_TOKEN", "REFRESH_TOKEN", "CLIENT_LOGIN"], "{seen:?}");
    let failed = records.iter().find(|r| r["type"] == "LOGIN_ERROR").unwrap();
    assert_eq!(failed["error"], "invalid_user_credentials");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["details"]["username"], "alice");
    assert_eq!(failed["clientId"], "web");
    assert_eq!(failed["ipAddress"], "127.0.0.1");
    let login = records.iter().find(|r| r["type"] == "LOGIN").unwrap();
    assert_eq!(login["clientId"], "web");
    assert!(login["userId"].is_string() && login["sessionId"].is_string(), "{login}");
    assert_eq!(login["hash"].as_str().unwrap().len(), 64);
    let refresh = records.iter().find(|r| r["type"] == "REFRESH_TOKEN").unwrap();
    assert_eq!(refresh["sessionId"], login["sessionId"]);
    assert_eq!(refresh["userId"], login["userId"]);
    let cc = records.iter().find(|r| r["type"] == "CLIENT_LOGIN").unwrap();
    assert_eq!(cc["clientId"], "svc");
    assert_eq!(cc["details"]["grant_type"], "client_credentials");
    // no secret, password, hash of one, or key material in any record
    let text = serde_json::to_string(&records).unwrap();
    for secret in ["web-secret-0123456789", "svc-secret-0123456789", "alice-password", "wrong", "$argon2", "ciphertext"]
    {
        assert!(!text.contains(secret), "{secret} appears in the audit records");
    }

    // and a reader resumes by position: after the third record, two records
    let after = positions[2];
    let (status, page, position) = pull(&demo, Some(&admin), &format!("?after={after}&max=2")).await;
    assert_eq!(status, 200);
    assert_eq!(page, records[3..5].to_vec());
    assert_eq!(position, Some(positions[4]));
    // from the end there is nothing, and a malformed position is refused
    let (status, page, _) = pull(&demo, Some(&admin), &format!("?after={}", positions.last().unwrap())).await;
    assert_eq!((status, page.len()), (200, 0));
    let (status, _, _) = pull(&demo, Some(&admin), "?after=-1").await;
    assert_eq!(status, 400);
    // an unknown realm is 404
    assert_eq!(pull_realm(&demo, "nope", Some(&admin), "").await.0, 404);
}

#[actix_rt::test]
async fn a_revoked_token_loses_audit_access_at_once_and_another_realms_token_never_has_it() {
    let demo = demo_with_auditor().await;
    let auditor =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    assert_eq!(pull(&demo, Some(&auditor), "").await.0, 200);
    // when the auditor's token is revoked (its session ends)
    let (status, _) = demo.post_as(("web", "web-secret-0123456789"), "revoke", &[("token", &auditor)]).await;
    assert_eq!(status, 200);
    // then the token no longer opens the audit stream
    assert_eq!(pull(&demo, Some(&auditor), "").await.0, 401);
    // and a token of another realm's user never does
    let alice =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("alice", "alice-password")).await;
    assert_eq!(pull_realm(&demo, "master", Some(&alice), "").await.0, 401);
}

/// An open live tail of the demo realm's audit stream, read event by event.
struct Tail {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Tail {
    async fn open(demo: &Demo, token: Option<&str>, last_event_id: Option<&str>) -> Result<Tail, u16> {
        let mut req = demo
            .http
            .get(format!("{}/admin/realms/demo/audit", demo.app.base_url))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.unwrap();
        if res.status() != 200 {
            return Err(res.status().as_u16());
        }
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Ok(Tail { res, buf: Vec::new() })
    }

    /// The next `audit` event: (id, record). Other fields (`retry`, comments) are skipped.
    async fn next(&mut self) -> (u64, Value) {
        loop {
            // Blocks are decoded whole: a chunk may end inside a character.
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string));
                if field("event").as_deref() == Some("audit") {
                    let id = field("id").unwrap().parse().unwrap();
                    return (id, serde_json::from_str(&field("data").unwrap()).unwrap());
                }
                assert!(field("event").is_none(), "unexpected event: {block}");
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), self.res.chunk())
                .await
                .expect("an event within 20 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Events until one of `kind`, returning it.
    async fn until(&mut self, kind: &str) -> (u64, Value) {
        loop {
            let (id, record) = self.next().await;
            if record["type"] == kind {
                return (id, record);
            }
        }
    }
}

#[actix_rt::test]
async fn the_live_tail_streams_new_records_as_they_happen_and_resumes_from_the_last_event_id() {
    let demo = demo_with_auditor().await;
    let admin = password_token(&demo, "master", ("admin-cli", None), ("admin", ADMIN_PASSWORD)).await;
    // nobody without a token, nor a malformed resume point
    assert_eq!(Tail::open(&demo, None, None).await.err(), Some(401));
    assert_eq!(Tail::open(&demo, Some(&admin), Some("x")).await.err(), Some(400));
    // given a tail opened before anything happened in the realm but its import
    let mut tail = Tail::open(&demo, Some(&admin), None).await.unwrap();
    let (first, record) = tail.next().await;
    assert_eq!(record["position"], first, "the event id is the record's position");
    assert_eq!(record["realmName"], "demo");
    // when a user logs in while it is open
    let alice =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("alice", "alice-password")).await;
    // then the login arrives on the open stream, after everything before it, in order
    let (login_at, login) = tail.until("LOGIN").await;
    assert!(login_at > first);
    assert_eq!(login["clientId"], "web", "{login}");
    assert!(login["userId"].is_string(), "{login}");
    // and a client reconnecting with the last id it saw gets only what came after
    let (status, _) = demo.post_as(("web", "web-secret-0123456789"), "revoke", &[("token", &alice)]).await;
    assert_eq!(status, 200);
    drop(tail);
    let mut resumed = Tail::open(&demo, Some(&admin), Some(&login_at.to_string())).await.unwrap();
    let (next, record) = resumed.next().await;
    assert!(next > login_at, "{next} after {login_at}");
    assert_ne!(record["type"], "LOGIN");
    // a user of the realm without view-events is refused
    let alice =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("alice", "alice-password")).await;
    assert_eq!(Tail::open(&demo, Some(&alice), None).await.err(), Some(403));
}
