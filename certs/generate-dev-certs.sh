#!/usr/bin/env bash
# Regenerates the DEVELOPMENT certificates in this folder: a throwaway CA (dev-ca/) and one
# certificate per example host group, signed by it (`--stand-in`: only the stand-in's). Never use these in production: the CA's
# private key is public, in this repository.
set -euo pipefail
cd "$(dirname "$0")"
days=3650

if [ "${1:-}" != --stand-in ]; then
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=Signpost DEVELOPMENT CA - do not trust" \
  -keyout dev-ca/ca.key -out dev-ca/ca.pem 2>/dev/null
fi

issue() { # NAME SAN...
  local name=$1; shift
  local san; san=$(printf 'DNS:%s,' "$@"); san=${san%,}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$1" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA dev-ca/ca.pem -CAkey dev-ca/ca.key -CAcreateserial \
    -days "$days" -out "$name.crt" \
    -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$san") 2>/dev/null
  rm -f "$name.csr"
}

if [ "${1:-}" != --stand-in ]; then
  issue flexhosting-se '*.flexhosting.se' flexhosting.se
  issue exempel-com hrm.exempel.com exempel.com
fi
# The quick start's local stand-in for the new domains (scripts/stand-in), in a folder of its
# own so that tls.certs (this folder) does not serve it.
issue stand-in/flexhrm-com web.flexhrm.com mobile.flexhrm.com api.flexhrm.com timeclock.flexhrm.com
rm -f dev-ca/ca.srl
echo "development certificates written to $(pwd)"
