"""Python authlib against Annals: the authorization code flow with PKCE (the login form posted
as a browser would) and the password grant, ID tokens verified with the published JWKS.
Environment as for openid_client.mjs. Exits non-zero on the first failed check."""
import os
import re
import secrets

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

env = os.environ
issuer = env["ISSUER"]
meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == issuer, meta
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())


def verified_id_token(token, nonce=None):
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_options={"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": env["CLIENT_ID"]}},
    )
    claims.validate()
    if nonce is not None:
        assert claims["nonce"] == nonce, claims
    return claims


# Authorization code with PKCE (S256).
session = OAuth2Session(
    env["CLIENT_ID"],
    env["CLIENT_SECRET"],
    scope="openid email profile",
    redirect_uri=env["REDIRECT_URI"],
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
verifier = secrets.token_urlsafe(48)
nonce = secrets.token_urlsafe(16)
url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
browser = requests.Session()
page = browser.get(url, allow_redirects=False, timeout=10)
assert page.status_code == 200, page.status_code
html = page.text.replace("&#x2f;", "/").replace("&amp;", "&")
action = re.search(r'<form[^>]*action="([^"]+)"', html).group(1)
csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
done = browser.post(action, data={"csrf": csrf, "username": env["USERNAME"], "password": env["PASSWORD"]}, allow_redirects=False, timeout=10)
assert done.status_code == 302, done.status_code
token = session.fetch_token(meta["token_endpoint"], authorization_response=done.headers["location"], code_verifier=verifier)
claims = verified_id_token(token, nonce)
assert claims["preferred_username"] == env["USERNAME"], claims
print("code flow ok", claims["sub"])

# A refresh through authlib, then userinfo with the new access token.
refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
assert refreshed["refresh_token"] != token["refresh_token"]
info = session.get(meta["userinfo_endpoint"], timeout=10).json()
assert info["sub"] == claims["sub"], info
print("refresh and userinfo ok")

# The password grant (direct access), against the same server.
direct = OAuth2Session(env["CLIENT_ID"], env["CLIENT_SECRET"], scope="openid")
token = direct.fetch_token(meta["token_endpoint"], username=env["USERNAME"], password=env["PASSWORD"])
assert verified_id_token(token)["sub"] == claims["sub"]
try:
    direct.fetch_token(meta["token_endpoint"], username=env["USERNAME"], password="wrong")
    raise SystemExit("a wrong password was accepted")
except Exception as e:  # authlib raises OAuthError with the server's error code
    assert "invalid_grant" in str(e), e
print("password grant ok")
