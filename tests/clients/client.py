"""A legacy integration written with Python `requests`: one request, the answer as JSON.

    python client.py METHOD URL [-H 'Name: value']... [-d BODY] [--no-follow]

Every host name resolves to 127.0.0.1 (the test's stand-in DNS); `REQUESTS_CA_BUNDLE` names
the trusted CAs. Prints {"status": N, "body": "..."} or {"error": "..."}.
"""
import argparse
import json
import socket

_getaddrinfo = socket.getaddrinfo


def _loopback(host, *args, **kwargs):
    return _getaddrinfo("127.0.0.1", *args, **kwargs)


socket.getaddrinfo = _loopback

import requests  # noqa: E402  (after the DNS stand-in is in place)

parser = argparse.ArgumentParser()
parser.add_argument("method")
parser.add_argument("url")
parser.add_argument("-H", action="append", default=[])
parser.add_argument("-d")
parser.add_argument("--no-follow", action="store_true")
args = parser.parse_args()
headers = dict(h.split(": ", 1) for h in args.H)
try:
    r = requests.request(
        args.method,
        args.url,
        headers=headers,
        data=args.d.encode() if args.d is not None else None,
        allow_redirects=not args.no_follow,
        timeout=10,
    )
    print(json.dumps({"status": r.status_code, "body": r.text}))
except Exception as e:  # the matrix records it
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
