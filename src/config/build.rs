//! Validation and compilation: `File*` structs → [`Table`], collecting every problem.
//!
//! Each problem is recorded with the file it came from and the YAML path of the offending node;
//! lines are looked up only at the end, and only if there are problems (see [`super::locate`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Method, StatusCode};

use super::error::{ConfigError, ConfigErrors, ConfigWarning, Problem};
use super::file::{
    FileAcme, FileConfig, FileFallback, FileForward, FileGone, FileInclude, FileListen,
    FileProfile, FileRedirect, FileRule, FileTenant,
};
use super::locate::{line_of, YamlPath};
use super::Source;
use crate::route::gone_page;
use crate::table::host::{index_key, HostIndex};
use crate::table::pattern::{is_name, Matcher, Pattern};
use crate::table::template::Template;
use crate::table::{
    Action, Brownout, Forward, Gate, HugePages, HugeVec, Kind, Meter, Phase, PhasePlan, Profile,
    Redirect, Rule, RuleSet, Schedule, Signals, Table, Tenant, TenantNo,
};
use crate::tls::CertStore;
use crate::upstream::{self, Upstream, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT};

const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
const DEFAULT_GONE_MESSAGE: &str = "This address is no longer in use.";
const DEFAULT_BROWNOUT_MESSAGE: &str = "This address is being retired. It fails on purpose for a \
    short, scheduled while (a brownout) so that integrations still using it are noticed before \
    it stops working for good. Move them to the new address.";

type Vars<'a> = dyn Fn(&str) -> Option<&'a str> + 'a;

/// Collects problems as (source index, YAML path, problem).
struct Builder<'a> {
    sources: &'a [Source],
    problems: Vec<(usize, YamlPath, Problem)>,
    /// What some clients will not survive (see [`Builder::advise`]).
    warnings: Vec<(usize, YamlPath, String)>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Whether the census runs: a census-gated phase needs it.
    census: bool,
}

/// A profile as written, with where it was written.
struct ProfileSource<'a> {
    src: usize,
    path: YamlPath,
    file: &'a FileProfile,
    compiled: Option<Arc<Profile>>,
}

pub fn build(
    main: &FileConfig,
    includes: &[(usize, FileInclude)],
    base: &Path,
    sources: &[Source],
    previous: Option<&Table>,
) -> Result<(Table, Option<CertStore>, Vec<ConfigWarning>), ConfigErrors> {
    let mut b = Builder {
        sources,
        problems: Vec::new(),
        warnings: Vec::new(),
        upstreams: BTreeMap::new(),
        census: main.census.enabled.unwrap_or(true),
    };
    let certs = b.process(main, base, previous);
    let profiles = b.profiles(main, includes);
    let all_tenants =
        std::iter::once((0, &main.tenants)).chain(includes.iter().map(|(s, f)| (*s, &f.tenants)));
    let (hosts, tenants) = b.tenants(all_tenants, &profiles, &main.vars);
    if !b.problems.is_empty() {
        return Err(b.into_errors());
    }
    let warnings = b.warnings();
    let table = Table::new(hosts, tenants, b.upstreams.into_values().collect());
    Ok((table, certs, warnings))
}

impl Builder<'_> {
    /// What shapes the process rather than the routing: listeners, certificates, variable
    /// names and upstreams. Returns the certificates when they load.
    fn process(
        &mut self,
        main: &FileConfig,
        base: &Path,
        previous: Option<&Table>,
    ) -> Option<CertStore> {
        let root = YamlPath::root();
        if main.listen.http.is_none() && main.listen.https.is_none() {
            self.problem(0, root.key("listen"), Problem::NoListener);
        }
        if main.listen.https.is_some() && main.tls.is_none() && main.acme.is_none() {
            self.problem(0, root.key("listen").key("https"), Problem::HttpsWithoutTls);
        }
        if let Some(acme) = &main.acme {
            self.acme(acme, &main.listen, base);
        }
        let certs =
            main.tls
                .as_ref()
                .and_then(|tls| match CertStore::load(&base.join(&tls.certs)) {
                    Ok(store) => Some(store),
                    Err(errors) => {
                        for e in errors {
                            self.problem(0, root.key("tls").key("certs"), Problem::Tls(e));
                        }
                        None
                    }
                });
        // With `acme:` alone, the operator's store is empty: ACME's certificates sit beside it.
        let certs =
            certs.or_else(|| (main.tls.is_none() && main.acme.is_some()).then(CertStore::empty));
        if let Some(store) = &main.census.store {
            if let Err(e) = super::StoreSettings::from_file(store, base, Duration::ZERO) {
                let field = match e {
                    super::StoreProblem::Url(_) => "url",
                    super::StoreProblem::PasswordFile(_) => "password_file",
                    super::StoreProblem::Ca(_) => "ca",
                };
                let path = root.key("census").key("store").key(field);
                self.problem(0, path, Problem::CensusStore(e.to_string()));
            }
        }
        for name in main.vars.keys().filter(|n| !is_name(n)) {
            let path = root.key("vars").key(name);
            self.problem(0, path, Problem::VarName(name.clone()));
        }
        for (name, up) in &main.upstreams {
            self.upstream(name, up, base, previous);
        }
        certs
    }

    /// `acme:`: a contact, an https directory, readable trust roots, the http listener its
    /// challenges are answered on, and a state directory to keep the certificates in.
    fn acme(&mut self, acme: &FileAcme, listen: &FileListen, base: &Path) {
        let at = YamlPath::root().key("acme");
        if listen.http.is_none() {
            let why = "needs `listen.http`: the CA checks that Signpost holds each name by an HTTP-01 challenge on port 80".to_owned();
            self.problem(0, YamlPath::root().key("listen"), Problem::Acme(why));
        }
        if listen.https.is_none() {
            let why = "needs `listen.https`: without it no client is ever served the certificates it obtains".to_owned();
            self.problem(0, YamlPath::root().key("listen"), Problem::Acme(why));
        }
        let email = acme.email.trim();
        if email.is_empty() || email.contains(char::is_whitespace) || !email.contains('@') {
            let why = format!("`email: {email}` is not an e-mail address; the CA writes there about expiring certificates");
            self.problem(0, at.key("email"), Problem::Acme(why));
        }
        if let Some(directory) = &acme.directory {
            if !directory.starts_with("https://") || directory.parse::<http::Uri>().is_err() {
                let why = format!("`directory: {directory}` is not an https:// URL");
                self.problem(0, at.key("directory"), Problem::Acme(why));
            }
        }
        if let Some(ca) = &acme.ca {
            if let Err(e) = super::trust_roots(&base.join(ca)) {
                self.problem(0, at.key("ca"), Problem::Acme(format!("ca: {e}")));
            }
        }
        if super::state_dir().is_none() {
            let why = "no state directory to keep the account and certificates in: set STATE_DIRECTORY (systemd's StateDirectory=), XDG_STATE_HOME or HOME".to_owned();
            self.problem(0, at, Problem::Acme(why));
        }
    }

    /// Every profile of the main file and the included ones (names are global), compiled.
    fn profiles<'a>(
        &mut self,
        main: &'a FileConfig,
        includes: &'a [(usize, FileInclude)],
    ) -> HashMap<&'a str, ProfileSource<'a>> {
        let root = YamlPath::root();
        let mut profiles: HashMap<&str, ProfileSource<'_>> = HashMap::new();
        let all_profiles = std::iter::once((0, &main.profiles))
            .chain(includes.iter().map(|(s, f)| (*s, &f.profiles)));
        for (src, map) in all_profiles {
            for (name, file) in map {
                let path = root.key("profiles").key(name);
                if let Some(first) = profiles.get(name.as_str()) {
                    let other = self.sources[first.src].path.display().to_string();
                    let name = name.clone();
                    self.problem(src, path, Problem::DuplicateProfile { name, other });
                    continue;
                }
                let compiled = None;
                profiles.insert(
                    name,
                    ProfileSource {
                        src,
                        path,
                        file,
                        compiled,
                    },
                );
            }
        }
        let global = |name: &str| main.vars.get(name).map(String::as_str);
        for (name, p) in profiles.iter_mut() {
            p.compiled = self
                .profile(name, p.src, &p.path, p.file, &global)
                .map(Arc::new);
        }
        profiles
    }

    /// Every tenant (lists with the index of the file each came from), and the index of
    /// their host names.
    fn tenants<'a>(
        &mut self,
        all_tenants: impl Iterator<Item = (usize, &'a Vec<FileTenant>)> + Clone,
        profiles: &HashMap<&str, ProfileSource<'_>>,
        vars: &BTreeMap<String, String>,
    ) -> (HostIndex, HugeVec<Tenant>) {
        let root = YamlPath::root();
        // Everything sized up front: a tenant is a few hundred bytes, and growing the vector
        // copied all of them (100 000 in a large fleet) several times over, into fresh pages.
        let count = all_tenants.clone().map(|(_, list)| list.len()).sum();
        let host_count = all_tenants
            .clone()
            .flat_map(|(_, list)| list.iter())
            .map(|t| t.hosts.len())
            .sum();
        let mut hosts = HostIndex::with_capacity(host_count);
        TenantNo::reserve(count);
        let mut tenants = HugeVec::with_capacity_in(count, HugePages);
        let mut host_owner: Vec<&str> = Vec::with_capacity(count);
        let mut ids =
            HashSet::with_capacity_and_hasher(count, foldhash::fast::RandomState::default());
        for (src, list) in all_tenants {
            for (i, t) in list.iter().enumerate() {
                let path = root.key("tenants").index(i);
                if !is_name(&t.id) {
                    self.problem(src, path.key("id"), Problem::TenantId { id: t.id.clone() });
                }
                if !ids.insert(t.id.as_str()) {
                    let problem = Problem::DuplicateTenant { id: t.id.clone() };
                    self.problem(src, path.key("id"), problem);
                    continue;
                }
                let index = host_owner.len() as u32;
                let hosts_ok = self.hosts(t, src, &path, index, &mut hosts, &host_owner);
                // A failed tenant still takes its index in `host_owner`, so that the indexes
                // in `hosts` name the right tenant in later errors; the table is discarded
                // anyway.
                if let Some(tenant) = self.tenant(t, src, &path, profiles, vars) {
                    if hosts_ok {
                        tenants.push(tenant);
                    }
                }
                host_owner.push(&t.id);
            }
        }
        (hosts, tenants)
    }

    /// Indexes a tenant's host names; `false` if one is invalid or another tenant's.
    fn hosts(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        index: u32,
        hosts: &mut HostIndex,
        host_owner: &[&str],
    ) -> bool {
        let mut ok = true;
        for (h, host) in t.hosts.iter().enumerate() {
            let at = path.key("hosts").index(h);
            let Some(key) = index_key(host) else {
                let problem = Problem::BadHost {
                    tenant: t.id.clone(),
                    host: host.clone(),
                };
                self.problem(src, at, problem);
                ok = false;
                continue;
            };
            if let Some(first) = hosts.insert(key, index) {
                let problem = Problem::DuplicateHost {
                    host: host.clone(),
                    first: host_owner[first as usize].to_owned(),
                    second: t.id.clone(),
                };
                self.problem(src, at, problem);
                ok = false;
            }
        }
        ok
    }
}

impl Builder<'_> {
    fn problem(&mut self, src: usize, path: YamlPath, problem: Problem) {
        self.problems.push((src, path, problem));
    }

    /// The warnings with their lines, each once (a profile's rules are compiled for every
    /// tenant that overrides its `vars`), in file order.
    fn warnings(&mut self) -> Vec<ConfigWarning> {
        let sources = self.sources;
        let mut warnings: Vec<ConfigWarning> = (self.warnings.drain(..))
            .map(|(src, path, text)| ConfigWarning {
                file: sources[src].path.clone(),
                line: line_of(&sources[src].text, &path),
                text,
            })
            .collect();
        warnings.sort_by(|a, b| (&a.file, a.line, &a.text).cmp(&(&b.file, b.line, &b.text)));
        warnings.dedup();
        warnings
    }

    /// Which legacy clients will not survive this rule's answer, as warnings: the knowledge
    /// behind the adaptive rule (README, "Why Signpost forwards"), applied to what an operator
    /// wrote.
    /// `name` and `kind` are the rule's (`fallback` for a profile's fallback); `methods` what
    /// it takes (`None`: every method).
    fn advise(
        &mut self,
        (name, kind): (&str, &str),
        (redirect, forward): (&Option<FileRedirect>, &Option<FileForward>),
        methods: Option<&[Method]>,
        src: usize,
        path: &YamlPath,
    ) {
        let Some(redirect) = redirect else {
            return;
        };
        let status = redirect.status.unwrap_or(307);
        let at = path.key("redirect");
        let takes_post = methods.is_none_or(|m| m.contains(&Method::POST));
        let only_post = methods.is_some_and(|m| m.iter().all(|m| m == Method::POST));
        let redirect_only = forward.is_none();
        let mut warn = |text: String| self.warnings.push((src, at.clone(), text));
        if matches!(status, 301..=303) && takes_post {
            warn(format!("rule `{name}`: a {status} redirect turns a POST into a GET and drops its body (browsers and most HTTP clients do); use 307, or 308 once the move is final, which keep the method and the body"));
        }
        if redirect_only && (only_post || kind.contains("callback") || kind.contains("webhook")) {
            warn(format!("rule `{name}`: SMS and payment webhook senders treat a redirect as a failure or do not follow it; forward it instead (`forward: {{ upstream: … }}`)"));
        }
        if redirect_only && kind == "api" {
            warn(format!("rule `{name}`: scripted API clients drop `Authorization` when a redirect crosses to another host (curl, Python requests, Java, .NET); forward it, or add `forward:` beside `redirect:` so that only browsers are redirected"));
        }
        if matches!(status, 301 | 308) {
            warn(format!("rule `{name}`: browsers keep a permanent ({status}) redirect for good, so a wrong mapping can never be taken back; use 307 until the move is final"));
        }
    }

    fn into_errors(self) -> ConfigErrors {
        let sources = self.sources;
        ConfigErrors(
            self.problems
                .into_iter()
                .map(|(src, path, problem)| ConfigError {
                    file: sources[src].path.clone(),
                    line: line_of(&sources[src].text, &path),
                    problem,
                })
                .collect(),
        )
    }

    fn upstream(
        &mut self,
        name: &str,
        up: &super::file::FileUpstream,
        base: &Path,
        previous: Option<&Table>,
    ) {
        let path = YamlPath::root().key("upstreams").key(name);
        let origin = match upstream::parse_origin(&up.url) {
            Ok(o) => o,
            Err(error) => {
                self.problem(
                    0,
                    path.key("url"),
                    Problem::Upstream {
                        name: name.to_owned(),
                        error,
                    },
                );
                return;
            }
        };
        let ca = match &up.ca {
            Some(file) => match upstream::load_ca(&base.join(file)) {
                Ok(ca) => Some(ca),
                Err(error) => {
                    self.problem(
                        0,
                        path.key("ca"),
                        Problem::Upstream {
                            name: name.to_owned(),
                            error,
                        },
                    );
                    return;
                }
            },
            None => None,
        };
        let default_port = if origin.tls { 443 } else { 80 };
        let authority = if origin.port == default_port {
            origin.host.clone()
        } else {
            format!("{}:{}", origin.host, origin.port)
        };
        let scheme = if origin.tls { "https" } else { "http" };
        // A reload keeps what the resolver already knows about the same name.
        let resolved = previous
            .and_then(|t| {
                t.upstreams()
                    .iter()
                    .find(|u| *u.host == origin.host && u.port == origin.port)
            })
            .map(|u| u.resolved.clone())
            .unwrap_or_else(|| Arc::new(ArcSwapOption::empty()));
        let upstream = Upstream {
            name: name.into(),
            tls: origin.tls,
            origin: format!("{scheme}://{authority}").into(),
            authority: authority.into(),
            host: origin.host.into(),
            port: origin.port,
            address: up.address,
            resolved,
            ca,
            connect_timeout: up.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            read_timeout: up.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
        };
        self.upstreams.insert(name.to_owned(), Arc::new(upstream));
    }

    fn profile(
        &mut self,
        name: &str,
        src: usize,
        path: &YamlPath,
        file: &FileProfile,
        vars: &Vars<'_>,
    ) -> Option<Profile> {
        let before = self.problems.len();
        let rules = self.rule_set(&file.rules, src, &path.key("rules"), vars);
        let fallback = file
            .fallback
            .as_ref()
            .and_then(|f| self.fallback(f, src, &path.key("fallback"), vars));
        (self.problems.len() == before).then(|| Profile {
            name: name.into(),
            source_hash: hash_of(file),
            rules,
            fallback,
        })
    }

    fn fallback(
        &mut self,
        f: &FileFallback,
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<Rule> {
        let kind = f.kind.clone().unwrap_or_else(|| "fallback".to_owned());
        self.advise(
            ("fallback", &kind),
            (&f.redirect, &f.forward),
            None,
            src,
            path,
        );
        let action = self.action(
            "fallback",
            (&f.redirect, &f.forward, &f.gone),
            &[],
            src,
            path,
            vars,
        )?;
        Some(Rule {
            name: "fallback".into(),
            kind: Kind::new(&kind),
            action,
            redact: Box::new([]),
        })
    }

    fn rule_set(
        &mut self,
        rules: &[FileRule],
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> RuleSet {
        let mut matcher = Matcher::default();
        let mut compiled: Vec<Rule> = Vec::new();
        let mut names = HashSet::new();
        for (i, r) in rules.iter().enumerate() {
            let at = path.index(i);
            if !names.insert(r.name.as_str()) {
                self.problem(
                    src,
                    at.key("name"),
                    Problem::DuplicateRule {
                        rule: r.name.clone(),
                    },
                );
                continue;
            }
            let Some((rule, pattern, methods)) = self.rule(r, src, &at, vars) else {
                continue;
            };
            match matcher.insert(&pattern, methods.as_deref(), compiled.len() as u32) {
                Ok(()) => compiled.push(rule),
                Err(conflict) => {
                    let other = compiled[conflict.existing as usize].name.to_string();
                    self.problem(
                        src,
                        at.key("match"),
                        Problem::Conflict {
                            rule: r.name.clone(),
                            other,
                        },
                    );
                }
            }
        }
        RuleSet::new(matcher, compiled)
    }

    fn rule(
        &mut self,
        r: &FileRule,
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<(Rule, Pattern, Option<Vec<Method>>)> {
        let rule_name = || r.name.clone();
        let pattern = match Pattern::parse(&r.pattern) {
            Ok(p) => p,
            Err(error) => {
                self.problem(
                    src,
                    path.key("match"),
                    Problem::Pattern {
                        rule: rule_name(),
                        error,
                    },
                );
                return None;
            }
        };
        let captures: Vec<&str> = pattern.capture_names().collect();
        let mut ok = true;
        let methods = r.methods.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(
                    |(i, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.problem(
                                src,
                                path.key("methods").index(i),
                                Problem::Method {
                                    rule: rule_name(),
                                    method: m.clone(),
                                },
                            );
                            ok = false;
                            None
                        }
                    },
                )
                .collect::<Vec<_>>()
        });
        for (i, name) in r.redact.iter().enumerate() {
            if !captures.contains(&name.as_str()) {
                self.problem(
                    src,
                    path.key("redact").index(i),
                    Problem::Redact {
                        rule: rule_name(),
                        name: name.clone(),
                    },
                );
                ok = false;
            }
        }
        let kind = r.kind.as_deref().unwrap_or(&r.name);
        let actions = (&r.redirect, &r.forward);
        self.advise((&r.name, kind), actions, methods.as_deref(), src, path);
        let action = self.action(
            &r.name,
            (&r.redirect, &r.forward, &r.gone),
            &captures,
            src,
            path,
            vars,
        );
        let rule = Rule {
            name: r.name.as_str().into(),
            kind: Kind::new(kind),
            action: action?,
            redact: r
                .redact
                .iter()
                .filter_map(|n| captures.iter().position(|c| c == n))
                .map(|i| i as u8)
                .collect(),
        };
        ok.then_some((rule, pattern, methods))
    }

    fn action(
        &mut self,
        rule: &str,
        (redirect, forward, gone): (
            &Option<FileRedirect>,
            &Option<FileForward>,
            &Option<FileGone>,
        ),
        captures: &[&str],
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<Action> {
        let fail = |b: &mut Self, reason| {
            b.problem(
                src,
                path.clone(),
                Problem::Action {
                    rule: rule.to_owned(),
                    reason,
                },
            );
            None
        };
        match (redirect, forward, gone) {
            (None, None, None) => fail(self, "needs `redirect`, `forward` or `gone`"),
            (None, None, Some(g)) => {
                let message = g.message.as_deref().unwrap_or(DEFAULT_GONE_MESSAGE);
                let text = Template::compile(message, &[], vars).and_then(|t| t.as_literal());
                match text {
                    Ok(text) => Some(Action::Gone(gone_page(&text))),
                    Err(error) => {
                        self.problem(
                            src,
                            path.key("gone").key("message"),
                            Problem::Template {
                                rule: rule.to_owned(),
                                error,
                            },
                        );
                        None
                    }
                }
            }
            (_, _, Some(_)) => fail(
                self,
                "`gone` cannot be combined with `redirect` or `forward`",
            ),
            (r, f, None) => {
                let r = r.as_ref().and_then(|r| {
                    self.redirect(rule, r, captures, src, &path.key("redirect"), vars)
                });
                let f = f
                    .as_ref()
                    .and_then(|f| self.forward(rule, f, captures, src, &path.key("forward"), vars));
                match (redirect.is_some(), forward.is_some(), r, f) {
                    (true, true, Some(r), Some(f)) => Some(Action::Adaptive(r, f)),
                    (true, false, Some(r), _) => Some(Action::Redirect(r)),
                    (false, true, _, Some(f)) => Some(Action::Forward(f)),
                    _ => None,
                }
            }
        }
    }

    fn redirect(
        &mut self,
        rule: &str,
        r: &FileRedirect,
        captures: &[&str],
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<Redirect> {
        let status = r.status.unwrap_or(307);
        let status = match StatusCode::from_u16(status) {
            Ok(s) if REDIRECT_STATUSES.contains(&status) => s,
            _ => {
                self.problem(
                    src,
                    path.key("status"),
                    Problem::Status {
                        rule: rule.to_owned(),
                        status,
                    },
                );
                return None;
            }
        };
        let to = Template::compile(&r.to, captures, vars)
            .and_then(|t| t.fixed_origin().map(|_| ()).map(|_| t));
        match to {
            Ok(to) => Some(Redirect {
                to,
                status,
                keep_query: r.keep_query.unwrap_or(true),
            }),
            Err(error) => {
                self.problem(
                    src,
                    path.clone(),
                    Problem::Template {
                        rule: rule.to_owned(),
                        error,
                    },
                );
                None
            }
        }
    }

    fn forward(
        &mut self,
        rule: &str,
        f: &FileForward,
        captures: &[&str],
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<Forward> {
        let Some(upstream) = self.upstreams.get(&f.upstream).cloned() else {
            let problem = Problem::UnknownUpstream {
                rule: rule.to_owned(),
                upstream: f.upstream.clone(),
            };
            self.problem(src, path.key("upstream"), problem);
            return None;
        };
        let template = match &f.path {
            Some(text) => {
                Template::compile(text, captures, vars).and_then(|t| t.check_path().map(|_| t))
            }
            None => Ok(Template::request_path()),
        };
        match template {
            Ok(path) => Some(Forward { upstream, path }),
            Err(error) => {
                self.problem(
                    src,
                    path.key("path"),
                    Problem::Template {
                        rule: rule.to_owned(),
                        error,
                    },
                );
                None
            }
        }
    }

    fn tenant(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        profiles: &HashMap<&str, ProfileSource<'_>>,
        global: &BTreeMap<String, String>,
    ) -> Option<Tenant> {
        let Some(profile_source) = profiles.get(t.profile.as_str()) else {
            let problem = Problem::UnknownProfile {
                tenant: t.id.clone(),
                profile: t.profile.clone(),
            };
            self.problem(src, path.key("profile"), problem);
            return None;
        };
        let before = self.problems.len();
        for name in t.vars.keys().filter(|n| !is_name(n)) {
            self.problem(
                src,
                path.key("vars").key(name),
                Problem::VarName(name.clone()),
            );
        }
        let vars = |name: &str| {
            t.vars
                .get(name)
                .or_else(|| global.get(name))
                .map(String::as_str)
        };
        let rules = self.rule_set(&t.rules, src, &path.key("rules"), &vars);
        // A tenant that overrides vars gets its own copy of the profile, compiled with them.
        let profile = if t.vars.is_empty() {
            profile_source.compiled.clone()
        } else {
            let p = profile_source;
            self.profile(&t.profile, p.src, &p.path, p.file, &vars)
                .map(Arc::new)
        };
        let schedule = self.schedule(t, src, path, &vars);
        let (derived_deprecation, derived_sunset) = schedule
            .as_deref()
            .map_or((None, None), Schedule::signal_dates);
        let deprecation = self
            .instant(t, src, path, "deprecation", t.deprecation.as_deref())
            .or(derived_deprecation);
        let sunset = self
            .instant(t, src, path, "sunset", t.sunset.as_deref())
            .or(derived_sunset);
        let signals = Signals {
            deprecation: deprecation
                .and_then(|ts| HeaderValue::from_str(&format!("@{}", ts.as_second())).ok()),
            sunset: sunset.and_then(|ts| {
                jiff::fmt::rfc2822::DateTimePrinter::new()
                    .timestamp_to_rfc9110_string(&ts)
                    .ok()
                    .and_then(|s| HeaderValue::from_str(&s).ok())
            }),
            sunset_at: sunset.map(|ts| ts.as_second()),
        };
        let profile = profile?;
        let needs_number = rules
            .rules()
            .iter()
            .chain(profile.rules.rules().iter())
            .chain(profile.fallback.iter())
            .any(Rule::uses_customer_number);
        if needs_number && t.customer_number.is_none() {
            self.problem(
                src,
                path.key("id"),
                Problem::NoCustomerNumber {
                    tenant: t.id.clone(),
                },
            );
        }
        (self.problems.len() == before).then(|| {
            // The id is the meter's: one copy of the name, however many reloads kept it. (A
            // tenant the running table has keeps its meter, and with it its counts.)
            let meter = Meter::of(&t.id);
            Tenant {
                source_hash: hash_of(t),
                id: meter.tenant.clone(),
                meter,
                customer_number: t.customer_number.as_deref().unwrap_or("").into(),
                contact: t.contact.as_deref().map(Into::into),
                rules,
                profile,
                signals: (signals.deprecation.is_some() || signals.sunset_at.is_some())
                    .then(|| Box::new(signals)),
                schedule,
            }
        })
    }

    /// Compiles `phases` and `brownouts`; `None` when the tenant has neither.
    fn schedule(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<Box<Schedule>> {
        if t.phases.is_empty() && t.brownouts.is_empty() {
            return None;
        }
        let phases = self.phases(t, src, path, vars);
        let brownouts = self.brownouts(t, src, path, vars);
        Some(Box::new(Schedule {
            phases: phases.into(),
            brownouts: brownouts.into(),
        }))
    }

    fn schedule_problem(&mut self, t: &FileTenant, src: usize, at: YamlPath, reason: &'static str) {
        let tenant = t.id.clone();
        self.problem(src, at, Problem::Schedule { tenant, reason });
    }

    /// A tenant's phases, each ending at its `until` (the last may run on), in order.
    fn phases(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Vec<Phase> {
        let mut phases = Vec::with_capacity(t.phases.len());
        let mut previous: Option<jiff::Timestamp> = None;
        for (i, p) in t.phases.iter().enumerate() {
            let at = path.key("phases").index(i);
            let last = i + 1 == t.phases.len();
            let until = match &p.until {
                Some(text) => match parse_instant(text) {
                    Some(ts) => Some(ts),
                    None => {
                        let reason = "`until` is not an RFC 3339 time";
                        self.schedule_problem(t, src, at.key("until"), reason);
                        continue;
                    }
                },
                None if last => None,
                None => {
                    let reason = "every phase but the last needs `until`";
                    self.schedule_problem(t, src, at, reason);
                    continue;
                }
            };
            if previous
                .zip(until)
                .is_some_and(|(before, until)| until <= before)
            {
                let reason = "phases must be in increasing `until` order";
                self.schedule_problem(t, src, at.key("until"), reason);
            }
            previous = until.or(previous);
            let gate = self.gate(t, i, src, &at);
            if let Some(plan) = self.phase_plan(t, i, src, &at, vars) {
                phases.push(Phase { until, plan, gate });
            }
        }
        phases
    }

    /// Phase `i`'s `after_quiet`: the census must have heard none of its kinds for a while
    /// before the phase may start.
    fn gate(&mut self, t: &FileTenant, i: usize, src: usize, at: &YamlPath) -> Option<Gate> {
        let quiet = t.phases[i].after_quiet.as_ref()?;
        let at = at.key("after_quiet");
        let problem = match quiet.quiet {
            _ if i == 0 => {
                Some("the first phase has no start to hold: `after_quiet` belongs on a later one")
            }
            _ if !self.census => Some("`after_quiet` needs the census (census.enabled is false)"),
            _ if quiet.kinds.is_empty() => Some(
                "`after_quiet` needs `kinds`: the rule kinds whose clients must have gone quiet",
            ),
            None | Some(Duration::ZERO) => Some(
                "`after_quiet` needs `for`: how long those clients must have been quiet (e.g. 14d)",
            ),
            Some(_) => None,
        };
        if let Some(reason) = problem {
            self.schedule_problem(t, src, at, reason);
            return None;
        }
        Some(Gate::new(
            quiet.kinds.iter().map(|k| k.as_str().into()).collect(),
            quiet.quiet.unwrap_or_default(),
        ))
    }

    /// What phase `i` does: the tenant's rules as configured, or one action for everything.
    fn phase_plan(
        &mut self,
        t: &FileTenant,
        i: usize,
        src: usize,
        at: &YamlPath,
        vars: &Vars<'_>,
    ) -> Option<PhasePlan> {
        let p = &t.phases[i];
        let has_action = p.redirect.is_some() || p.forward.is_some() || p.gone.is_some();
        match (&p.rules, has_action) {
            (Some(rules), false) if rules == "profile" => Some(PhasePlan::Rules),
            (Some(_), false) => {
                let reason = "`rules` can only be `profile`";
                self.schedule_problem(t, src, at.key("rules"), reason);
                None
            }
            (Some(_), true) => {
                let reason = "a phase has `rules` or one action, not both";
                self.schedule_problem(t, src, at.clone(), reason);
                None
            }
            (None, _) => {
                let name = format!("phase-{}", i + 1);
                let actions = (&p.redirect, &p.forward, &p.gone);
                let action = self.action(&name, actions, &[], src, at, vars)?;
                Some(PhasePlan::All(Rule {
                    name: name.as_str().into(),
                    kind: Kind::new(p.kind.as_deref().unwrap_or("phase")),
                    action,
                    redact: Box::default(),
                }))
            }
        }
    }

    /// A tenant's brownout windows, each with its page.
    fn brownouts(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        vars: &Vars<'_>,
    ) -> Vec<Brownout> {
        let mut brownouts = Vec::with_capacity(t.brownouts.len());
        for (i, b) in t.brownouts.iter().enumerate() {
            let at = path.key("brownouts").index(i);
            let (Some(from), Some(until)) = (parse_instant(&b.from), parse_instant(&b.until))
            else {
                let reason = "`from` and `until` must be RFC 3339 times";
                self.schedule_problem(t, src, at, reason);
                continue;
            };
            if from >= until {
                let reason = "a brownout's `until` must be after its `from`";
                self.schedule_problem(t, src, at.key("until"), reason);
                continue;
            }
            let message = b.message.as_deref().unwrap_or(DEFAULT_BROWNOUT_MESSAGE);
            match Template::compile(message, &[], vars).and_then(|t| t.as_literal()) {
                Ok(text) => brownouts.push(Brownout {
                    from,
                    until,
                    kinds: b.kinds.iter().map(|k| k.as_str().into()).collect(),
                    page: gone_page(&text),
                }),
                Err(error) => {
                    let rule = format!("brownout {}", i + 1);
                    self.problem(src, at.key("message"), Problem::Template { rule, error });
                }
            }
        }
        brownouts
    }

    /// A tenant's date field (`deprecation`, `sunset`), reported when it does not parse.
    fn instant(
        &mut self,
        t: &FileTenant,
        src: usize,
        path: &YamlPath,
        field: &'static str,
        value: Option<&str>,
    ) -> Option<jiff::Timestamp> {
        let value = value?;
        match parse_instant(value) {
            Some(ts) => Some(ts),
            None => {
                let problem = Problem::Date {
                    tenant: t.id.clone(),
                    field,
                    value: value.to_owned(),
                };
                self.problem(src, path.key(field), problem);
                None
            }
        }
    }
}

/// A hash of what the user wrote, to tell which tenants and profiles a reload changed.
/// Stable within one process, which is all change detection needs.
fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::default().hash_one(value)
}

/// `2025-10-01` (midnight UTC) or an RFC 3339 time with offset.
/// A date (midnight UTC) or an RFC 3339 time.
pub fn parse_instant(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl Rule {
    fn uses_customer_number(&self) -> bool {
        match &self.action {
            Action::Redirect(r) => r.to.uses_customer_number(),
            Action::Forward(f) => f.path.uses_customer_number(),
            Action::Adaptive(r, f) => r.to.uses_customer_number() || f.path.uses_customer_number(),
            Action::Gone(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load;

    /// Writes `files` (name, YAML) into a fresh folder, loads the first, and returns the error
    /// lines with the folder's path removed.
    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let prefix = format!("{}/", dir.path().display());
        match load(&dir.path().join(files[0].0), None) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| e.to_string().replace(&prefix, ""))
                    .collect()
            }
        }
    }

    fn one(yaml: &str) -> Vec<String> {
        errors(&[("main.yaml", yaml)])
    }

    /// The warnings of a config that loads, without the folder.
    fn warnings(yaml: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.yaml");
        std::fs::write(&path, yaml).unwrap();
        let prefix = format!("{}/", dir.path().display());
        let config = load(&path, None).unwrap();
        (config.warnings.iter())
            .map(|w| w.to_string().replace(&prefix, ""))
            .collect()
    }

    #[test]
    fn three_mistakes_in_three_tenants_are_reported_in_one_run() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    fallback: {{ redirect: \"https://{{web}}/\" }}\ntenants:\n  - id: t1\n    hostz: [t1.example]\n    profile: p\n  - id: t2\n    hosts: [t2.example]\n    profile: p\n  - id: t3\n    hosts: [t3.example]\n  - id: t4\n    hosts: [t4.example]\n    profile: p\n    phasez: []\n"
        );
        let errs = one(&yaml);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("main.yaml:9: tenants: unknown field `hostz`"),
            "{errs:#?}"
        );
        assert!(
            errs[1].starts_with("main.yaml:14: tenants: missing field `profile`"),
            "{errs:#?}"
        );
        assert!(
            errs[2].starts_with("main.yaml:19: tenants: unknown field `phasez`"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_tab_and_a_misaligned_block_are_explained() {
        let errs = one("listen:\n\thttp: 127.0.0.1:8080\n");
        assert_eq!(
            errs,
            ["main.yaml:2: a tab in the indentation: YAML indents with spaces only (two per level here)"]
        );
        let errs = one(
            "listen: { http: 127.0.0.1:8080 }\ntenants:\n  - id: t1\n     hosts: [t1.example]\n",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("main.yaml:4: mapping values are not allowed in this context: check this line's indentation against the lines above it"),
            "{errs:?}"
        );
    }

    #[test]
    fn listen_addresses_are_read_as_nginx_reads_them() {
        use super::super::file::parse_listen_address as parse;
        assert_eq!(
            parse("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(parse("*:80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(parse("8080").unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(parse("[::1]:8443").unwrap().to_string(), "[::1]:8443");
        assert_eq!(
            one("listen: { http: localhost:8080 }\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            one("listen: { http: example.com:80 }\n"),
            ["main.yaml:1: listen: `example.com:80` is not a listen address: write IP:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:80), localhost:PORT, *:PORT or a port alone"]
        );
    }

    #[test]
    fn check_warns_of_answers_legacy_clients_do_not_survive() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    fallback: {{ redirect: {{ to: \"https://{{web}}/\", status: 303 }} }}\n    rules:\n      - {{ name: form, match: /form, redirect: {{ to: \"https://{{web}}/\", status: 302 }} }}\n      - {{ name: sms, kind: sms_callback, match: /sms, methods: [POST], redirect: \"https://{{web}}/sms\" }}\n      - {{ name: api, kind: api, match: /api, redirect: \"https://{{web}}/api\" }}\n      - {{ name: old, match: /old, methods: [GET], redirect: {{ to: \"https://{{web}}/\", status: 301 }} }}\n      - {{ name: fine, match: /fine, redirect: \"https://{{web}}/fine\" }}\n      - {{ name: both, kind: api, match: /both, redirect: \"https://{{web}}/b\", forward: {{ upstream: api }} }}\ntenants:\n  - {{ id: t1, hosts: [t1.example], profile: p }}\n  - {{ id: t2, hosts: [t2.example], profile: p, vars: {{ web: other.example }} }}\n"
        );
        assert_eq!(
            warnings(&yaml),
            [
                "main.yaml:6: warning: rule `fallback`: a 303 redirect turns a POST into a GET and drops its body (browsers and most HTTP clients do); use 307, or 308 once the move is final, which keep the method and the body",
                "main.yaml:8: warning: rule `form`: a 302 redirect turns a POST into a GET and drops its body (browsers and most HTTP clients do); use 307, or 308 once the move is final, which keep the method and the body",
                "main.yaml:9: warning: rule `sms`: SMS and payment webhook senders treat a redirect as a failure or do not follow it; forward it instead (`forward: { upstream: … }`)",
                "main.yaml:10: warning: rule `api`: scripted API clients drop `Authorization` when a redirect crosses to another host (curl, Python requests, Java, .NET); forward it, or add `forward:` beside `redirect:` so that only browsers are redirected",
                "main.yaml:11: warning: rule `old`: browsers keep a permanent (301) redirect for good, so a wrong mapping can never be taken back; use 307 until the move is final",
            ]
        );
    }

    const HEAD: &str = "\
listen: { http: 127.0.0.1:8080 }
vars: { web: web.example }
upstreams: { api: { url: https://api.example } }
";

    #[test]
    fn a_valid_config_loads() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    fallback: {{ redirect: \"https://{{web}}/\" }}\n    rules:\n      - {{ name: a, match: \"/a/{{x}}\", redirect: \"https://{{web}}/{{x}}\" }}\ntenants:\n  - {{ id: t1, hosts: [t1.example], profile: p }}\n"
        );
        assert_eq!(one(&yaml), Vec::<String>::new());
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let yaml = format!("{HEAD}profiles: {{ p: {{}} }}\ntenants:\n  - id: t1\n    hostz: [t1.example]\n    profile: p\n");
        let errs = one(&yaml);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("main.yaml:7: tenants: unknown field `hostz`"),
            "{errs:?}"
        );
    }

    #[test]
    fn duplicate_host_across_files_names_both_tenants() {
        let main = format!("{HEAD}include: [tenants.d/*.yaml]\nprofiles: {{ p: {{}} }}\ntenants:\n  - {{ id: t1, hosts: [Shared.Example], profile: p }}\n");
        let extra = "tenants:\n  - id: t2\n    profile: p\n    hosts:\n      - other.example\n      - shared.example.\n";
        let errs = errors(&[("main.yaml", &main), ("tenants.d/more.yaml", extra)]);
        assert_eq!(errs, vec!["tenants.d/more.yaml:6: host `shared.example.` belongs to tenant `t1` and to tenant `t2`"]);
    }

    #[test]
    fn undefined_variable() {
        let yaml = format!("{HEAD}profiles:\n  p:\n    rules:\n      - name: r\n        match: /r\n        redirect: \"https://{{mobile}}/\"\n");
        assert_eq!(
            one(&yaml),
            vec!["main.yaml:9: rule `r`: unknown name `{mobile}`: not a capture of this rule's pattern, a variable, `tenant.id` or `tenant.customer_number`"]
        );
    }

    #[test]
    fn undefined_upstream() {
        let yaml = format!("{HEAD}profiles:\n  p:\n    rules:\n      - name: r\n        match: /r\n        forward: {{ upstream: nope }}\n");
        assert_eq!(
            one(&yaml),
            vec!["main.yaml:9: rule `r`: unknown upstream `nope`"]
        );
    }

    #[test]
    fn conflicting_patterns() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    rules:\n      - {{ name: first, match: \"/a/{{x}}\", redirect: \"https://{{web}}/\" }}\n      - {{ name: second, match: \"/A/{{y}}/\", methods: [get], redirect: \"https://{{web}}/\" }}\n"
        );
        assert_eq!(
            one(&yaml),
            vec!["main.yaml:8: rule `second` would match the same requests as rule `first` (same pattern, overlapping methods)"]
        );
    }

    #[test]
    fn capture_cannot_choose_the_redirect_host() {
        let yaml = format!("{HEAD}profiles:\n  p:\n    rules:\n      - name: r\n        match: \"/go/{{host}}\"\n        redirect: \"https://{{host}}/\"\n");
        let errs = one(&yaml);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "main.yaml:9: rule `r`: the scheme and host of a redirect must be fixed"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_profile_and_missing_customer_number() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    rules:\n      - {{ name: r, match: /r, redirect: \"https://{{web}}/{{tenant.customer_number}}\" }}\ntenants:\n  - {{ id: t1, hosts: [t1.example], profile: q }}\n  - {{ id: t2, hosts: [t2.example], profile: p }}\n"
        );
        assert_eq!(
            one(&yaml),
            vec![
                "main.yaml:9: tenant `t1`: unknown profile `q`",
                "main.yaml:10: tenant `t2`: a rule uses {tenant.customer_number} but the tenant has no `customer_number`",
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = format!(
            "{HEAD}profiles:\n  p:\n    rules:\n      - {{ name: a, match: a, redirect: \"https://{{web}}/\" }}\n      - {{ name: b, match: /b, redirect: {{ to: \"https://{{web}}/\", status: 200 }} }}\n      - {{ name: c, match: /c, gone: true, redirect: \"https://{{web}}/\" }}\n      - {{ name: d, match: /d }}\ntenants:\n  - {{ id: t1, hosts: [\"bad host\"], profile: p, sunset: soon }}\n"
        );
        let errs = one(&yaml);
        assert_eq!(
            errs,
            vec![
                "main.yaml:7: rule `a`: pattern must start with `/`",
                "main.yaml:8: rule `b`: redirect status 200 is not one of 301, 302, 303, 307, 308",
                "main.yaml:9: rule `c`: `gone` cannot be combined with `redirect` or `forward`",
                "main.yaml:10: rule `d`: needs `redirect`, `forward` or `gone`",
                "main.yaml:12: tenant `t1`: invalid host `bad host`",
                "main.yaml:12: tenant `t1`: `sunset: soon` is not a date (2025-10-01) or an RFC 3339 time",
            ]
        );
    }

    #[test]
    fn https_needs_tls_and_a_listener_is_required() {
        assert_eq!(
            one("listen: { https: 127.0.0.1:8443 }\n"),
            vec!["main.yaml:1: `listen.https` needs certificates: a `tls:` section with `certs`, or `acme:`"]
        );
        assert_eq!(
            one("vars: {}\n"),
            vec!["main.yaml:1: `listen` needs `http` or `https` (or both)"]
        );
    }

    #[test]
    fn acme_needs_a_contact_an_https_directory_readable_roots_and_the_http_listener() {
        assert_eq!(
            one("listen: { https: 127.0.0.1:8443 }\nacme:\n  email: ops at exempel.com\n  directory: http://ca.example/dir\n  ca: missing.pem\n"),
            vec![
                "main.yaml:1: acme: needs `listen.http`: the CA checks that Signpost holds each name by an HTTP-01 challenge on port 80",
                "main.yaml:3: acme: `email: ops at exempel.com` is not an e-mail address; the CA writes there about expiring certificates",
                "main.yaml:4: acme: `directory: http://ca.example/dir` is not an https:// URL",
                "main.yaml:5: acme: ca: missing.pem: No such file or directory (os error 2)",
            ]
        );
        assert_eq!(
            one("listen: { http: 127.0.0.1:8080 }\nacme: { email: ops@exempel.com }\n"),
            ["main.yaml:1: acme: needs `listen.https`: without it no client is ever served the certificates it obtains"]
        );
        assert_eq!(
            one("listen: { http: 127.0.0.1:8080, https: 127.0.0.1:8443 }\nacme: { email: ops@exempel.com }\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn syntax_errors_keep_serde_yaml_location() {
        let errs = one("listen: { http: 127.0.0.1:8080 }\nserver:\n  grace_period: soon\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("main.yaml:3: server: invalid duration \"soon\""),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_include_is_an_error_but_an_empty_glob_is_not() {
        let main = format!("{HEAD}include: [missing.yaml, empty.d/*.yaml]\n");
        let errs = errors(&[("main.yaml", &main)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("main.yaml:4: include `missing.yaml`: no file"),
            "{errs:?}"
        );
    }

    #[test]
    fn bundled_example_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
        let config = load(&example, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.table.tenants().len(), 2);
    }
}
