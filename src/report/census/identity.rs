//! Who a legacy client is: what a person reading the report needs to find the integration's
//! owner, and nothing that would let anyone call as it.
//!
//! A request's raw identity (its credential, User-Agent and address) lives in memory for at
//! most one drain interval; then it becomes a [`Client`]:
//! - Basic (and Digest) auth show the **user name in clear**, an account name ops can look up
//!   (`census.user_names: hashed` fingerprints it instead). A Basic credential with an empty
//!   password carries its secret as the user name (`KEY:`, as Stripe-style APIs do), so that
//!   one is always fingerprinted.
//! - A Bearer token that is a JWT shows its `sub`, `client_id` and `azp` claims, read without
//!   verifying the signature and labelled `(unverified)`: anyone can mint a token that claims
//!   anything, but a real integration's token names its real client.
//! - Every other secret (opaque Bearer tokens, API keys, other schemes) gets a **keyed**
//!   fingerprint, `key:3f2a9c1e`: an HMAC under a key made once per installation, so the
//!   report never holds an unsalted hash that a dictionary of leaked keys would reverse.
//!
//! The client id is the same HMAC over the identity, the full User-Agent and the address.

use std::net::IpAddr;

use base64::Engine as _;
use ring::hmac;

use super::agent::ClientClass;
use super::rows::Client;

/// User-Agents are kept whole up to this many bytes.
pub const USER_AGENT_CAP: usize = 256;
/// A user name or claim is shown up to this many characters.
const NAME_CAP: usize = 64;

/// A client's identity as the request showed it, before fingerprinting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawIdentity {
    /// (`authorization` or the API-key header's name, raw value)
    pub credential: Option<(String, String)>,
    /// At most [`USER_AGENT_CAP`] bytes.
    pub user_agent: String,
    pub address: Option<IpAddr>,
}

/// Turns raw identities into report clients under this installation's key.
pub struct Fingerprinter {
    key: hmac::Key,
    hash_user_names: bool,
}

/// How a credential is shown, and the material its part of the client id is made of.
struct Shown {
    text: String,
    material: String,
}

impl Fingerprinter {
    pub fn new(secret: &[u8], hash_user_names: bool) -> Self {
        Fingerprinter {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            hash_user_names,
        }
    }

    /// The report's client for this identity: nothing secret survives this.
    pub fn client(&self, raw: &RawIdentity) -> Client {
        let shown = raw
            .credential
            .as_ref()
            .map(|(label, value)| self.credential(label, value));
        let address = raw.address.map_or_else(String::new, |a| a.to_string());
        let id = self.hex(
            &[
                shown.as_ref().map_or("", |s| s.material.as_str()),
                &raw.user_agent,
                &address,
            ],
            6,
        );
        Client {
            id,
            class: ClientClass::of(&raw.user_agent),
            user_agent: raw.user_agent.clone(),
            address,
            credential: shown.map(|s| s.text),
        }
    }

    fn credential(&self, label: &str, value: &str) -> Shown {
        if label != "authorization" {
            return self.keyed(label, value);
        }
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        // The scheme word is shown as is only when it is a common one: no client text is.
        let scheme = scheme.to_ascii_lowercase();
        let scheme = match scheme.as_str() {
            "basic" | "bearer" | "digest" | "negotiate" | "ntlm" | "token" | "apikey" | "hmac"
            | "aws4-hmac-sha256" => scheme.as_str(),
            _ => "other",
        };
        match scheme {
            "basic" => match basic_user(rest) {
                Some((user, has_password)) if has_password => self.user(scheme, &user),
                Some((user, _)) => self.keyed(scheme, &user),
                None => self.keyed(scheme, rest),
            },
            "digest" => match digest_user(rest) {
                Some(user) => self.user(scheme, user),
                None => self.keyed(scheme, rest),
            },
            "bearer" => match jwt_claims(rest) {
                Some(claims) => Shown {
                    text: format!("jwt:{claims} (unverified)"),
                    material: format!("jwt\0{claims}"),
                },
                None => self.keyed(scheme, rest),
            },
            _ => self.keyed(scheme, rest),
        }
    }

    /// An account name, in clear unless the operator asked for fingerprints.
    fn user(&self, scheme: &str, user: &str) -> Shown {
        if self.hash_user_names {
            return self.keyed(scheme, user);
        }
        let user = printable(user);
        Shown {
            text: format!("{scheme}:{user}"),
            material: format!("{scheme}\0{user}"),
        }
    }

    fn keyed(&self, label: &str, secret: &str) -> Shown {
        let material = format!("{label}\0{}", self.hex(&[secret], 16));
        Shown {
            text: format!("{label}:key:{}", self.hex(&[secret], 4)),
            material,
        }
    }

    /// Hex of the first `bytes` bytes of the HMAC over the parts (each ended by a NUL, so
    /// parts cannot run into each other).
    fn hex(&self, parts: &[&str], bytes: usize) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p.as_bytes());
            ctx.update(&[0]);
        }
        ctx.sign().as_ref()[..bytes]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The User-Agent, cut at [`USER_AGENT_CAP`] bytes (on a character boundary).
pub fn capped_user_agent(agent: &str) -> &str {
    let mut end = agent.len().min(USER_AGENT_CAP);
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

/// The user name of a Basic credential (`base64(user:password)`) and whether a password
/// follows it.
fn basic_user(encoded: &str) -> Option<(String, bool)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(match text.split_once(':') {
        Some((user, password)) => (user.to_owned(), !password.is_empty()),
        None => (text, false),
    })
}

/// The `username="…"` parameter of a Digest credential.
fn digest_user(params: &str) -> Option<&str> {
    params.split(',').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("username")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// `sub=…,client_id=…,azp=…` of a JWT's payload (those present, in that order), read without
/// verification; `None` when the token is not a JWT or names none of them.
fn jwt_claims(token: &str) -> Option<String> {
    const CLAIMS: [&str; 3] = ["sub", "client_id", "azp"];
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    if parts.next().is_none() || parts.next().is_some() || token.len() > 16 * 1024 {
        return None;
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
    header.get("alg")?;
    let payload: serde_json::Value = serde_json::from_slice(&b64.decode(payload).ok()?).ok()?;
    let shown: Vec<String> = CLAIMS
        .iter()
        .filter_map(|name| {
            let value = payload.get(name)?.as_str()?;
            Some(format!("{name}={}", printable(value)))
        })
        .collect();
    (!shown.is_empty()).then(|| shown.join(","))
}

/// A name a client sent, safe to show anywhere: letters, digits and `._-@+\` kept, anything
/// else `?`, at most [`NAME_CAP`] characters.
fn printable(name: &str) -> String {
    name.chars()
        .take(NAME_CAP)
        .map(|c| {
            if c.is_alphanumeric() || "._-@+\\".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(credential: Option<(&str, &str)>) -> RawIdentity {
        RawIdentity {
            credential: credential.map(|(l, v)| (l.to_owned(), v.to_owned())),
            user_agent: "curl/8.5.0".into(),
            address: Some("192.0.2.7".parse().unwrap()),
        }
    }

    fn jwt(payload: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64.encode(payload)
        )
    }

    fn shown(f: &Fingerprinter, label: &str, value: &str) -> String {
        f.client(&raw(Some((label, value)))).credential.unwrap()
    }

    #[test]
    fn basic_shows_the_user_name_unless_hashed_or_the_password_is_empty() {
        let f = Fingerprinter::new(b"k", false);
        // lönesystem:pw1 and lönesystem:pw2
        let b64 = base64::engine::general_purpose::STANDARD;
        let one = format!("Basic {}", b64.encode("lönesystem:pw1"));
        let two = format!("basic {}", b64.encode("lönesystem:pw2"));
        assert_eq!(shown(&f, "authorization", &one), "basic:lönesystem");
        assert_eq!(
            f.client(&raw(Some(("authorization", &one)))).id,
            f.client(&raw(Some(("authorization", &two)))).id,
            "the password is not part of the identity"
        );
        let key_as_user = format!("Basic {}", b64.encode("sk_live_abc:"));
        let s = shown(&f, "authorization", &key_as_user);
        assert!(s.starts_with("basic:key:") && !s.contains("sk_live"), "{s}");
        let hashed = Fingerprinter::new(b"k", true);
        let s = shown(&hashed, "authorization", &one);
        assert!(
            s.starts_with("basic:key:") && s.len() == "basic:key:".len() + 8,
            "{s}"
        );
        let odd = format!("Basic {}", b64.encode("a<b>\"c:pw"));
        assert_eq!(shown(&f, "authorization", &odd), "basic:a?b??c");
    }

    #[test]
    fn jwt_claims_are_shown_unverified_and_opaque_tokens_are_keyed() {
        let f = Fingerprinter::new(b"k", false);
        let token = jwt(r#"{"sub":"svc-payroll","azp":"payroll-app","exp":1}"#);
        assert_eq!(
            shown(&f, "authorization", &format!("Bearer {token}")),
            "jwt:sub=svc-payroll,azp=payroll-app (unverified)"
        );
        // A renewed token of the same client is the same client.
        let renewed = jwt(r#"{"sub":"svc-payroll","azp":"payroll-app","exp":2}"#);
        assert_eq!(
            f.client(&raw(Some(("authorization", &format!("Bearer {token}")))))
                .id,
            f.client(&raw(Some(("authorization", &format!("Bearer {renewed}")))))
                .id
        );
        let nameless = jwt(r#"{"exp":1}"#);
        assert!(
            shown(&f, "authorization", &format!("Bearer {nameless}")).starts_with("bearer:key:")
        );
        let opaque = shown(&f, "authorization", "Bearer s3cr3t-token");
        assert!(
            opaque.starts_with("bearer:key:") && !opaque.contains("s3cr3t"),
            "{opaque}"
        );
        let api_key = shown(&f, "x-api-key", "k-123");
        assert!(api_key.starts_with("x-api-key:key:"), "{api_key}");
        assert!(shown(&f, "authorization", "Zq7Marker abc").starts_with("other:key:"));
        let digest = r#"Digest username="terminal7", realm="hrm", nonce="abc", response="def""#;
        assert_eq!(shown(&f, "authorization", digest), "digest:terminal7");
    }

    #[test]
    fn fingerprints_depend_on_the_installation_key() {
        let (a, b) = (
            Fingerprinter::new(b"one", false),
            Fingerprinter::new(b"two", false),
        );
        let token = ("authorization", "Bearer s3cr3t-token");
        assert_ne!(shown(&a, token.0, token.1), shown(&b, token.0, token.1));
        assert_ne!(a.client(&raw(None)).id, b.client(&raw(None)).id);
        // No unsalted hash: the fingerprint is not a prefix of SHA-256 of the secret.
        let sha = ring::digest::digest(&ring::digest::SHA256, b"s3cr3t-token");
        let plain: String = sha.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown(&a, token.0, token.1).contains(&plain));
    }

    #[test]
    fn the_user_agent_is_kept_whole_up_to_the_cap() {
        let long = format!("Agent/1 ({})", "å".repeat(300));
        let capped = capped_user_agent(&long);
        assert!(capped.len() <= USER_AGENT_CAP && capped.len() > USER_AGENT_CAP - 2);
        assert_eq!(
            capped_user_agent("curl/8.5.0 (x86_64)"),
            "curl/8.5.0 (x86_64)"
        );
    }
}
