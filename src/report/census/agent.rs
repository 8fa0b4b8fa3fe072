//! What kind of program a User-Agent names: the class a straggler row shows, so ops can tell
//! a person's calendar from a nightly script at a glance.
//!
//! A small table of case-insensitive substrings, tried in order; the first class with a match
//! wins. The order matters: calendar apps and scripts often also say `Mozilla/` (Thunderbird,
//! PowerShell), and calendar apps are often built on a scripting client (ICSx⁵ on OkHttp), so
//! the specific classes come before `script` and `browser`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientClass {
    Browser,
    Calendar,
    Script,
    Webhook,
    Terminal,
    #[default]
    Unknown,
}

const TABLE: &[(ClientClass, &[&str])] = &[
    (
        ClientClass::Calendar,
        &[
            "google-calendar",
            "calendaragent", // macOS Calendar
            "dataaccessd",   // iOS Calendar
            "icsx5",         // ICSx⁵ (Android)
            "thunderbird",
            "outlook",          // Outlook for Windows, iOS, Android
            "microsoft office", // Outlook desktop's subscription fetcher
            "microsoft.exchange",
            "davx5",
            "evolution/",
        ],
    ),
    (
        ClientClass::Webhook,
        &[
            "ip1",
            "46elks",
            "twilio",
            "sinch",
            "vonage",
            "nexmo",
            "messagebird",
            "stripe",
            "adyen",
            "klarna",
            "paypal",
            "mollie",
            "bambora",
        ],
    ),
    (ClientClass::Terminal, &["timeclock", "terminal", "kiosk"]),
    (
        ClientClass::Script,
        &[
            "curl/",
            "wget/",
            "python", // python-requests, Python-urllib, python-httpx, aiohttp's Python/3.x
            "powershell", // WindowsPowerShell/5.1 and PowerShell/7 both begin with Mozilla/5.0
            "java/",
            "apache-httpclient",
            "okhttp",
            "go-http-client",
            "ms web services client protocol", // .NET Framework's SOAP and WebClient stacks
            ".net clr",
            "restsharp",
            "node-fetch",
            "undici",
            "axios",
            "libwww-perl",
            "ruby",
            "guzzlehttp",
            "postmanruntime",
        ],
    ),
    (ClientClass::Browser, &["mozilla/", "opera/"]),
];

impl ClientClass {
    pub fn of(user_agent: &str) -> ClientClass {
        if user_agent.eq_ignore_ascii_case("node") {
            return ClientClass::Script; // Node's built-in fetch sends exactly this
        }
        let lower = user_agent.to_ascii_lowercase();
        TABLE
            .iter()
            .find(|(_, needles)| needles.iter().any(|n| lower.contains(n)))
            .map_or(ClientClass::Unknown, |(class, _)| *class)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientClass::Browser => "browser",
            ClientClass::Calendar => "calendar",
            ClientClass::Script => "script",
            ClientClass::Webhook => "webhook",
            ClientClass::Terminal => "terminal",
            ClientClass::Unknown => "unknown",
        }
    }

    pub const ALL: [ClientClass; 6] = [
        ClientClass::Browser,
        ClientClass::Calendar,
        ClientClass::Script,
        ClientClass::Webhook,
        ClientClass::Terminal,
        ClientClass::Unknown,
    ];
}

#[cfg(test)]
mod tests {
    use super::ClientClass::{self, *};

    /// User-Agent strings as the named clients send them.
    #[test]
    fn real_user_agents_get_their_class() {
        let cases: &[(&str, ClientClass)] = &[
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", Browser),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", Browser),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", Browser),
            ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)", Calendar),
            ("Outlook-iOS/709.2226530.prod.iphone (4.2437.0)", Calendar),
            ("Outlook-Android/2.0", Calendar),
            ("Google-Calendar-Importer", Calendar),
            ("macOS/15.1 (24B83) CalendarAgent/1003", Calendar),
            ("iOS/18.1 (22B83) dataaccessd/1.0", Calendar),
            ("ICSx5/2.2.4-ose (ical4j/3.2.19; okhttp/4.12.0; Java/17; Android 14)", Calendar),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0", Calendar),
            ("curl/8.5.0", Script),
            ("python-requests/2.31.0", Script),
            ("Python-urllib/3.11", Script),
            ("Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.5129", Script),
            ("Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.6", Script),
            ("Java/17.0.13", Script),
            ("Apache-HttpClient/4.5.14 (Java/17.0.13)", Script),
            ("Go-http-client/1.1", Script),
            ("Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)", Script),
            ("node", Script),
            ("axios/1.7.7", Script),
            ("TwilioProxy/1.1", Webhook),
            ("Stripe/1.0 (+https://stripe.com/docs/webhooks)", Webhook),
            // A User-Agent that names a timeclock (no vendor string is known to be universal).
            ("FlexTimeclock/3.2 (Android 11)", Terminal),
            ("", Unknown),
            ("SomethingElse/1.0", Unknown),
        ];
        for (agent, class) in cases {
            assert_eq!(ClientClass::of(agent), *class, "{agent:?}");
        }
    }
}
