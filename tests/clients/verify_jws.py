"""Checks Annals' signed JWS (audit checkpoints, evidence manifests) with PyJWT, a JOSE
library independent of Annals: the key comes from the server's published JWKS.

Usage: verify_jws.py JWKS_URL TYP < tokens (one compact JWS per line); prints each payload
as one JSON line, exits non-zero on the first token that does not verify."""
import json
import sys
import urllib.request

import jwt


def main() -> int:
    jwks_url, typ = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(jwks_url) as res:
        jwks = jwt.PyJWKSet.from_dict(json.load(res))
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        header = jwt.get_unverified_header(token)
        if header.get("typ") != typ:
            print(f"unexpected typ {header.get('typ')!r}", file=sys.stderr)
            return 1
        key = next((k for k in jwks.keys if k.key_id == header.get("kid")), None)
        if key is None:
            print(f"kid {header.get('kid')!r} not in {jwks_url}", file=sys.stderr)
            return 1
        payload = jwt.api_jws.PyJWS().decode(token, key.key, algorithms=["EdDSA"])
        print(json.dumps(json.loads(payload), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
