// A real browser (Debian's Chromium, driven by playwright-core) through the HTML pages: log in
// at one client, get in at a second one by SSO without seeing a form, ask the OP's
// check_session_iframe from a relying party's page, then log out. The
// relying parties are one small HTTP server on a loopback port (a loopback redirect URI may
// take any port). Environment as for openid_client.mjs, plus CHROMIUM (the binary).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import http from 'node:http';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing ${k}`); return v; };
const issuer = env('ISSUER');
const opOrigin = new URL(issuer).origin;

// /check is a relying party's session-management page: it frames the OP's check_session_iframe
// and window.ask(message) posts to it and resolves with the answer.
const checkPage = `<iframe id="op" src="${issuer}/protocol/openid-connect/login-status-iframe.html"></iframe>
<script>
window.ask = (m) => new Promise((ok) => {
  const h = (e) => { if (e.origin !== ${JSON.stringify(opOrigin)}) return; window.removeEventListener('message', h); ok(e.data); };
  window.addEventListener('message', h);
  document.getElementById('op').contentWindow.postMessage(m, ${JSON.stringify(opOrigin)});
});
</script>`;
const rp = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(req.url.startsWith('/check') ? checkPage : '<p>relying party</p>');
});
await new Promise((ok) => rp.listen(0, '127.0.0.1', ok));
const rpBase = `http://127.0.0.1:${rp.address().port}`;
const browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The relying parties: any page under their origins just says where the browser landed.
  const auth = (client, redirect) => {
    const u = new URL(`${issuer}/protocol/openid-connect/auth`);
    u.search = new URLSearchParams({
      client_id: client, redirect_uri: redirect, response_type: 'code', scope: 'openid', state: 's1', nonce: 'n1',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
    });
    return u.href;
  };

  // The login page: labelled fields, a wrong password first, then the right one.
  await page.goto(auth(env('CLIENT_ID'), `${rpBase}/cb`));
  await page.getByLabel('Username or email').fill(env('USERNAME'));
  await page.getByLabel('Password').fill('wrong-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /Invalid username or password/);
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.href.startsWith(`${rpBase}/cb?`));
  const first = new URL(page.url());
  assert.ok(first.searchParams.get('code'), 'a code');
  assert.equal(first.searchParams.get('state'), 's1');
  assert.equal(first.searchParams.get('iss'), issuer);
  console.log('login ok');

  // A second client: single sign-on, no form.
  await page.goto(auth(env('OTHER_ID'), `${rpBase}/other`));
  await page.waitForURL((u) => u.href.startsWith(`${rpBase}/other?`));
  assert.ok(new URL(page.url()).searchParams.get('code'), 'SSO code');
  const otherState = new URL(page.url()).searchParams.get('session_state');
  console.log('sso ok');

  // Session management: the relying party's frame asks the OP's iframe whether the session
  // it got session_state for is still the browser's.
  const webState = first.searchParams.get('session_state');
  const ask = async (message) => { await page.goto(`${rpBase}/check`); return page.evaluate((m) => window.ask(m), message); };
  assert.equal(await ask(`${env('CLIENT_ID')} ${webState}`), 'unchanged');
  assert.equal(await ask(`${env('OTHER_ID')} ${otherState}`), 'unchanged');
  assert.equal(await ask(`${env('OTHER_ID')} ${webState}`), 'changed', 'another client');
  assert.equal(await ask(`${env('CLIENT_ID')} ${webState.replace(/^./, (c) => (c === '0' ? '1' : '0'))}`), 'changed', 'altered');
  assert.equal(await ask('no-session-state'), 'error');
  // keycloak-js posts the ID token's sid instead of a session_state.
  const tokenRes = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${env('CLIENT_ID')}:${env('CLIENT_SECRET')}`).toString('base64')}` },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: first.searchParams.get('code'), redirect_uri: `${rpBase}/cb`,
      code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
    }),
  });
  assert.equal(tokenRes.status, 200, await tokenRes.clone().text());
  const idToken = (await tokenRes.json()).id_token;
  const sid = JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url').toString()).sid;
  assert.equal(await ask(`${env('CLIENT_ID')} ${sid}`), 'unchanged', 'keycloak-js form');
  assert.equal(await ask(`${env('CLIENT_ID')} 00000000-0000-0000-0000-000000000000`), 'changed');
  // A page of an origin the client never registered gets no answer about the session.
  await page.goto(`http://localhost:${rp.address().port}/check`);
  assert.equal(await page.evaluate((m) => window.ask(m), `${env('CLIENT_ID')} ${webState}`), 'error');
  console.log('check_session_iframe ok');

  // Logout without a hint: the confirmation page, then the session is gone.
  await page.goto(`${issuer}/protocol/openid-connect/logout`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByText('You have been signed out.').waitFor();
  assert.equal(await ask(`${env('CLIENT_ID')} ${webState}`), 'changed', 'logged out');
  assert.equal(await ask(`${env('CLIENT_ID')} ${sid}`), 'changed', 'logged out, keycloak-js form');
  await page.goto(auth(env('CLIENT_ID'), `${rpBase}/cb`));
  await page.getByLabel('Password').waitFor();
  console.log('logout ok: the next visit asks for credentials again');
} finally {
  await browser.close();
  rp.close();
}
