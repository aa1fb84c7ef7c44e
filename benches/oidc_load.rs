//! HTTP load for the OpenID provider's figures: client credentials, refresh rotation,
//! introspection and the full authorization-code login, each over keep-alive HTTP/1.1
//! connections (a minimal client: a general one would cost the generator more than the
//! server). Also the same-run baselines: argon2id hashes per second on one core.
use base64::Engine;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Conn {
    pub async fn connect(host: &str) -> io::Result<Conn> {
        let s = TcpStream::connect(host).await?;
        s.set_nodelay(true)?;
        Ok(Conn { io: BufReader::new(s), host: host.to_string() })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.host, body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.io.get_mut().write_all(&bytes).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            line.clear();
            self.io.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(io::Error::other("chunked responses are not expected"));
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; length];
        self.io.read_exact(&mut body).await?;
        Ok(Response { status, headers, body })
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

pub fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
}

pub const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Runs `connections` workers for `duration`, each repeating `op` on its own connection;
/// reports rate and latency percentiles of the operations.
pub async fn drive<F, Fut, S>(
    host: &str,
    connections: usize,
    duration: Duration,
    setup: impl Fn(usize) -> S,
    op: F,
) -> serde_json::Value
where
    F: Fn(Conn, S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (Conn, S, Result<(), String>, Duration)> + Send,
    S: Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..connections {
        let conn = Conn::connect(host).await.expect("connect");
        let (stop, op, mut state) = (stop.clone(), op.clone(), setup(i));
        tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let (c, s, result, took) = op(conn, state).await;
                conn = c;
                state = s;
                match result {
                    Ok(()) => lat.push(took),
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        lat.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    serde_json::json!({
        "ok": lat.len(),
        "per_s": lat.len() as f64 / secs,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "errors": errors,
        "connections": connections,
        "seconds": secs,
    })
}

/// argon2id (19 MiB, t=2, p=1) hashes per second on `threads` threads: the login ceiling.
pub fn argon2_ceiling(threads: usize, duration: Duration) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    annals::credentials::password::hash_password("ceiling-password").expect("hash");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

/// Access tokens signed per second on this thread by the server's signer with a new realm key
/// of `alg`; the claims are those of a client-credentials token.
pub fn signing_ceiling(alg: &str, duration: Duration) -> f64 {
    let keys = annals::secrets::ServerKeys::from_master_key(
        &base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )
    .expect("server keys");
    let g = annals::keys::generate(alg).expect("key");
    let view = annals_projections::signing_keys::KeyView {
        kid: g.kid,
        realm_id: "bench".into(),
        algorithm: g.algorithm,
        public_jwk: g.public_jwk,
        private_key: keys.seal(&g.private_pkcs8).expect("seal"),
        created_at: chrono::Utc::now(),
        position: 1,
        status: annals_projections::signing_keys::KeyStatus::Active,
    };
    let signer = annals::jwt::Signer::open(&view, &keys).expect("signer");
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "exp": now + 300, "iat": now, "jti": uuid::Uuid::now_v7().to_string(),
        "iss": "http://127.0.0.1:8080/realms/bench", "aud": "account",
        "sub": uuid::Uuid::now_v7().to_string(), "typ": "Bearer", "azp": "cc-es",
        "scope": "profile email", "clientHost": "127.0.0.1", "preferred_username": "service-account-cc-es",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    });
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        for _ in 0..32 {
            std::hint::black_box(signer.sign("at+jwt", &claims).expect("sign"));
        }
        n += 32;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Which OpenID flow to drive.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Flow {
    ClientCredentials,
    Refresh,
    Introspect,
    /// Introspection of tokens never introspected before (the signature check every time).
    IntrospectCold,
    Login,
}

pub struct Target {
    pub host: String,
    pub realm: String,
    pub client: String,
    pub secret: String,
    pub username: String,
    pub password: String,
}

impl Target {
    fn path(&self, p: &str) -> String {
        format!("/realms/{}/protocol/openid-connect/{p}", self.realm)
    }

    /// A session's tokens from the password grant.
    async fn password_grant(&self, conn: &mut Conn) -> serde_json::Value {
        let auth = basic(&self.client, &self.secret);
        let body = form(&[
            ("grant_type", "password"),
            ("username", &self.username),
            ("password", &self.password),
            ("scope", "openid"),
        ]);
        let r =
            conn.request("POST", &self.path("token"), &[FORM, ("Authorization", &auth)], &body).await.expect("token");
        assert_eq!(r.status, 200, "password grant: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }
}

fn status_error(r: &io::Result<Response>, want: u16) -> Result<(), String> {
    match r {
        Ok(r) if r.status == want => Ok(()),
        Ok(r) => Err(format!("status {}", r.status)),
        Err(e) => Err(format!("io {e}")),
    }
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The authorization-code login, step by step, as a browser and its relying party do it.
async fn login_once(t: &Target, conn: &mut Conn, redirect: &str) -> Result<(), String> {
    let query = form(&[
        ("client_id", &t.client),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "bench"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    let path = format!("{}?{}", t.path("auth"), String::from_utf8_lossy(&query));
    let page = conn.request("GET", &path, &[], b"").await.map_err(|e| e.to_string())?;
    if page.status != 200 {
        return Err(format!("auth status {}", page.status));
    }
    let cookie = page.header("set-cookie").and_then(|c| c.split(';').next()).unwrap_or("").to_string();
    let html = String::from_utf8_lossy(&page.body).replace("&#x2f;", "/").replace("&amp;", "&");
    let attr = |after: &str, name: &str| -> Option<String> {
        let from = html.find(after)?;
        let start = from + html[from..].find(&format!("{name}=\""))? + name.len() + 2;
        Some(html[start..start + html[start..].find('"')?].to_string())
    };
    let (action, csrf) = (attr("<form", "action").ok_or("no form")?, attr("name=\"csrf\"", "value").ok_or("no csrf")?);
    let action_path = action.find("/realms/").map(|i| action[i..].to_string()).ok_or("bad action")?;
    let body = form(&[("csrf", &csrf), ("username", &t.username), ("password", &t.password)]);
    let done =
        conn.request("POST", &action_path, &[FORM, ("Cookie", &cookie)], &body).await.map_err(|e| e.to_string())?;
    let location = done.header("location").ok_or_else(|| format!("login status {}", done.status))?;
    let code = url::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .ok_or("no code")?;
    let auth = basic(&t.client, &t.secret);
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
    ]);
    let r = conn.request("POST", &t.path("token"), &[FORM, ("Authorization", &auth)], &body).await;
    status_error(&r, 200)
}

/// `cold_tokens`: tokens minted for the cold introspection run (more than it can ask about in
/// its time).
pub async fn run(
    flow: Flow,
    t: Target,
    connections: usize,
    duration: Duration,
    redirect: String,
    cold_tokens: usize,
) -> serde_json::Value {
    let t = Arc::new(t);
    let host = t.host.clone();
    let auth = Arc::new(basic(&t.client, &t.secret));
    match flow {
        Flow::ClientCredentials => {
            let body = Arc::new(form(&[("grant_type", "client_credentials")]));
            let path = Arc::new(t.path("token"));
            drive(
                &host,
                connections,
                duration,
                |_| (),
                move |mut c, ()| {
                    let (body, path, auth) = (body.clone(), path.clone(), auth.clone());
                    async move {
                        let s = Instant::now();
                        let r = c.request("POST", &path, &[FORM, ("Authorization", &auth)], &body).await;
                        (c, (), status_error(&r, 200), s.elapsed())
                    }
                },
            )
            .await
        }
        Flow::Introspect => {
            let mut c = Conn::connect(&t.host).await.expect("connect");
            let token = t.password_grant(&mut c).await["access_token"].as_str().unwrap_or_default().to_string();
            let body = Arc::new(form(&[("token", &token)]));
            let path = Arc::new(t.path("token/introspect"));
            drive(
                &host,
                connections,
                duration,
                |_| (),
                move |mut c, ()| {
                    let (body, path, auth) = (body.clone(), path.clone(), auth.clone());
                    async move {
                        let s = Instant::now();
                        let r = c.request("POST", &path, &[FORM, ("Authorization", &auth)], &body).await;
                        let ok = match &r {
                            Ok(r) if r.status == 200 && r.json()["active"] == true => Ok(()),
                            _ => status_error(&r, 200).and(Err("inactive".to_string())),
                        };
                        (c, (), ok, s.elapsed())
                    }
                },
            )
            .await
        }
        Flow::IntrospectCold => {
            // Enough distinct client-credentials tokens that none is asked about twice.
            let mut c = Conn::connect(&t.host).await.expect("connect");
            let body = form(&[("grant_type", "client_credentials")]);
            let mut tokens = Vec::new();
            for _ in 0..cold_tokens {
                let r =
                    c.request("POST", &t.path("token"), &[FORM, ("Authorization", &auth)], &body).await.expect("token");
                tokens.push(r.json()["access_token"].as_str().unwrap_or_default().to_string());
            }
            let per = tokens.len() / connections.max(1);
            let slices: Vec<Vec<String>> = tokens.chunks(per.max(1)).map(|c| c.to_vec()).collect();
            let path = Arc::new(t.path("token/introspect"));
            drive(
                &host,
                connections,
                duration,
                |i| slices.get(i).cloned().unwrap_or_default().into_iter(),
                move |mut c, mut left: std::vec::IntoIter<String>| {
                    let (path, auth) = (path.clone(), auth.clone());
                    async move {
                        let Some(token) = left.next() else {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            return (c, left, Err("tokens exhausted".to_string()), Duration::ZERO);
                        };
                        let s = Instant::now();
                        let r = c
                            .request("POST", &path, &[FORM, ("Authorization", &auth)], &form(&[("token", &token)]))
                            .await;
                        let ok = match &r {
                            Ok(r) if r.status == 200 && r.json()["active"] == true => Ok(()),
                            _ => status_error(&r, 200).and(Err("inactive".to_string())),
                        };
                        (c, left, ok, s.elapsed())
                    }
                },
            )
            .await
        }
        Flow::Refresh => {
            let mut c = Conn::connect(&t.host).await.expect("connect");
            let mut tokens = Vec::new();
            for _ in 0..connections {
                tokens.push(t.password_grant(&mut c).await["refresh_token"].as_str().unwrap_or_default().to_string());
            }
            let path = Arc::new(t.path("token"));
            drive(
                &host,
                connections,
                duration,
                |i| tokens[i].clone(),
                move |mut c, rt: String| {
                    let (path, auth) = (path.clone(), auth.clone());
                    async move {
                        let s = Instant::now();
                        let body = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]);
                        let r = c.request("POST", &path, &[FORM, ("Authorization", &auth)], &body).await;
                        match r {
                            Ok(r) if r.status == 200 => {
                                let next = r.json()["refresh_token"].as_str().unwrap_or_default().to_string();
                                (c, next, Ok(()), s.elapsed())
                            }
                            other => {
                                let e = status_error(&other, 200);
                                (c, rt, e, s.elapsed())
                            }
                        }
                    }
                },
            )
            .await
        }
        Flow::Login => {
            let redirect = Arc::new(redirect);
            drive(
                &host,
                connections,
                duration,
                |_| (),
                move |mut c, ()| {
                    let (t, redirect) = (t.clone(), redirect.clone());
                    async move {
                        let s = Instant::now();
                        let r = login_once(&t, &mut c, &redirect).await;
                        (c, (), r, s.elapsed())
                    }
                },
            )
            .await
        }
    }
}
