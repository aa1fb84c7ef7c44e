// A certified relying party (npm openid-client) against Annals: discovery, authorization
// code with PKCE (the login form posted as a browser would), refresh, userinfo,
// introspection, revocation, client credentials and RP-initiated logout. Exits non-zero on
// the first failed check. Environment: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
// SERVICE_ID, SERVICE_SECRET, USERNAME, PASSWORD, POST_LOGOUT_URI.
import * as client from 'openid-client';
import assert from 'node:assert/strict';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing ${k}`); return v; };
const issuer = new URL(env('ISSUER'));
const options = { execute: [client.allowInsecureRequests] };

const config = await client.discovery(issuer, env('CLIENT_ID'), env('CLIENT_SECRET'), undefined, options);
assert.equal(config.serverMetadata().issuer, issuer.href.replace(/\/$/, ''));
console.log('discovery ok');

// Authorization code with PKCE; the login page is filled in like a browser would.
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: env('REDIRECT_URI'),
  scope: 'openid email profile',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});
const jar = new Map();
const keep = (res) => {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    jar.set(pair.slice(0, i), pair.slice(i + 1));
  }
};
const cookie = () => [...jar].filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join('; ');
let res = await fetch(authUrl, { redirect: 'manual' });
assert.equal(res.status, 200, 'login page');
keep(res);
const html = (await res.text()).replaceAll('&#x2f;', '/').replaceAll('&amp;', '&');
const action = html.match(/<form[^>]*action="([^"]+)"/)[1];
const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
res = await fetch(action, {
  method: 'POST',
  redirect: 'manual',
  headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie() },
  body: new URLSearchParams({ csrf, username: env('USERNAME'), password: env('PASSWORD') }),
});
assert.equal(res.status, 302, 'login accepted');
keep(res);
const callback = new URL(res.headers.get('location'));
const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
assert.equal(claims.preferred_username, env('USERNAME'));
console.log('code flow ok', claims.sub);

const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
assert.equal(info.sub, claims.sub);
assert.ok(info.email);
console.log('userinfo ok');

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
console.log('refresh ok');

let intro = await client.tokenIntrospection(config, refreshed.access_token);
assert.equal(intro.active, true);
await client.tokenRevocation(config, refreshed.refresh_token);
intro = await client.tokenIntrospection(config, refreshed.access_token);
assert.equal(intro.active, false, 'revoking the refresh token ends its access tokens');
console.log('introspection and revocation ok');

const service = await client.discovery(issuer, env('SERVICE_ID'), env('SERVICE_SECRET'), undefined, options);
const cc = await client.clientCredentialsGrant(service, { scope: 'profile' });
assert.equal(cc.token_type.toLowerCase(), 'bearer');
assert.equal((await client.tokenIntrospection(service, cc.access_token)).active, true);
console.log('client credentials ok');

// A second login (SSO through the cookie), then RP-initiated logout with the ID token hint.
const second = client.buildAuthorizationUrl(config, {
  redirect_uri: env('REDIRECT_URI'), scope: 'openid', state, prompt: 'none',
  code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
});
res = await fetch(second, { redirect: 'manual', headers: { cookie: cookie() } });
assert.equal(res.status, 302);
const again = await client.authorizationCodeGrant(config, new URL(res.headers.get('location')), {
  pkceCodeVerifier: verifier, expectedState: state,
});
const logout = client.buildEndSessionUrl(config, {
  id_token_hint: again.id_token,
  post_logout_redirect_uri: env('POST_LOGOUT_URI'),
  state: 'bye',
});
res = await fetch(logout, { redirect: 'manual', headers: { cookie: cookie() } });
assert.equal(res.status, 302);
assert.equal(res.headers.get('location'), `${env('POST_LOGOUT_URI')}?state=bye`);
intro = await client.tokenIntrospection(config, again.access_token);
assert.equal(intro.active, false, 'logged out at once');
console.log('logout ok');
