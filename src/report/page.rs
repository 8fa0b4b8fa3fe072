//! The straggler page: a per-tenant summary ranked by the last 7 days' legacy requests (the
//! list ops work through), a chart of legacy requests per kind over the last 48 hours, and per
//! tenant the clients still calling, with whom to contact. Filters by tenant, kind and class
//! are a plain form (`?tenant=&kind=&class=`), so they work without script and the same query
//! narrows `/stragglers.json` and `/stragglers.csv`. Server-rendered HTML and SVG with a few
//! lines of inline script for sorting; nothing is loaded from elsewhere, so it works offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::census::{ClientClass, ClientRow, Filter, Held, Report};

const COLOURS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563",
];

/// Dash patterns, one per series, so lines that lie on each other stay told apart.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "10 3 2 3"];
/// The chart always spans this long, ending now.
const CHART_SECONDS: u64 = 48 * 3600;

/// The page for a report already narrowed by `filter` (which the form shows).
pub fn render(report: &Report, filter: &Filter) -> String {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(HEAD);
    filters(&mut html, filter);
    let _ = write!(
        html,
        "<p class=muted>{} legacy clients across {} tenants · generated {} UTC{}</p>",
        report.clients.len(),
        report
            .clients
            .iter()
            .map(|r| &r.tenant)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        utc(report.generated_at),
        if report.evictions > 0 {
            format!(" · {} older clients evicted", report.evictions)
        } else {
            String::new()
        }
    );
    summary(&mut html, report);
    let _ = write!(
        html,
        "<h2>Legacy requests per kind, last 48 hours{}</h2>",
        if filter.tenant.is_some() || filter.class.is_some() {
            " <span class=muted>(all tenants and classes)</span>"
        } else {
            ""
        }
    );
    chart(&mut html, report);
    let mut by_tenant: BTreeMap<&str, Vec<&ClientRow>> = BTreeMap::new();
    for row in &report.clients {
        by_tenant.entry(&row.tenant).or_default().push(row);
    }
    if by_tenant.is_empty() {
        html.push_str("<p>No legacy traffic seen yet.</p>");
    }
    for (tenant, rows) in by_tenant {
        let total: u64 = rows.iter().map(|r| r.count).sum();
        let first = rows[0];
        let _ = write!(
            html,
            "<section><h2 id=\"tenant-{t}\">{t} <span class=muted>· {}{} · {} · {}</span></h2>",
            first
                .customer_number
                .as_deref()
                .map(|n| format!("customer {}", esc(n)))
                .unwrap_or_default(),
            first
                .contact
                .as_deref()
                .map(|c| format!(" · contact: {}", esc(c)))
                .unwrap_or_default(),
            plural(rows.len() as u64, "client"),
            plural(total, "request"),
            t = esc(tenant)
        );
        html.push_str("<table class=clients><thead><tr><th>Kind</th><th>Client</th><th>Class</th><th>User-Agent</th><th>Address</th><th>Credential</th><th data-sort=num>Requests</th><th data-sort=num>First seen</th><th data-sort=num class=sorted>Last seen</th><th>Last path</th><th>Status</th></tr></thead><tbody>");
        for r in rows {
            let _ = write!(
                html,
                "<tr class=client data-tenant=\"{}\" data-class={}><td>{}</td><td><code>{}</code></td><td>{}</td><td class=ua>{}</td><td>{}</td><td>{}</td><td data-v={c}>{c}</td><td data-v={f}>{}</td><td data-v={l}>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&r.tenant),
                r.client.class.as_str(),
                esc(&r.kind),
                esc(&r.client.id),
                r.client.class.as_str(),
                esc(&r.client.user_agent),
                esc(&r.client.address),
                r.client.credential.as_deref().map(esc).unwrap_or_default(),
                utc(r.first_seen),
                utc(r.last_seen),
                esc(&r.last_path),
                r.last_status,
                c = r.count,
                f = r.first_seen,
                l = r.last_seen,
            );
        }
        html.push_str("</tbody></table></section>");
    }
    html.push_str(SCRIPT);
    html
}

/// One polyline per kind over the last 48 hours (the axis always spans them, ending at the
/// report's time), each with its own colour and dash pattern.
fn chart(html: &mut String, report: &Report) {
    let (width, height, pad) = (900.0_f64, 240.0_f64, 40.0_f64);
    let step = report.bucket_seconds.max(1);
    let last = report.generated_at - report.generated_at % step;
    let first = last.saturating_sub(CHART_SECONDS - step);
    let mut kinds: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for p in report
        .timeline
        .iter()
        .filter(|p| p.at >= first && p.at <= last)
    {
        *kinds.entry(&p.kind).or_default().entry(p.at).or_default() += p.count;
    }
    if kinds.is_empty() {
        html.push_str("<p class=muted>No legacy requests in the last 48 hours.</p>");
        return;
    }
    let max = kinds
        .values()
        .flat_map(|s| s.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let span = (last - first).max(step) as f64;
    let x = |at: u64| pad + (at - first) as f64 / span * (width - 2.0 * pad);
    let y = |n: u64| height - pad - n as f64 / max * (height - 2.0 * pad - 16.0);
    let _ = write!(html, "<svg class=chart viewBox=\"0 0 {width} {height}\" role=img aria-label=\"legacy requests per kind over the last 48 hours\">");
    let b = height - pad;
    let _ = write!(html, "<line x1={pad} y1={b} x2={r} y2={b} stroke=#999 /><line x1={pad} y1={t} x2={pad} y2={b} stroke=#999 />", r = width - pad, t = pad + 16.0);
    let _ = write!(
        html,
        "<text x=4 y={} font-size=11>{}</text><text x=4 y={b} font-size=11>0</text>",
        pad + 20.0,
        max as u64,
    );
    // A tick every 6 hours, labelled with the UTC time, and the span's ends dated.
    let mut tick = first + (6 * 3600 - first % (6 * 3600)) % (6 * 3600);
    while tick <= last {
        let _ = write!(html, "<line x1={x:.1} y1={b} x2={x:.1} y2={} stroke=#ccc /><text x={x:.1} y={} font-size=10 text-anchor=middle>{}</text>", b + 4.0, b + 15.0, hour(tick), x = x(tick));
        tick += 6 * 3600;
    }
    let _ = write!(html, "<text x={pad} y={} font-size=11>{}</text><text x={} y={} font-size=11 text-anchor=end>{} UTC</text>", height - 6.0, utc(first), width - pad, height - 6.0, utc(last));
    for (i, (kind, series)) in kinds.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = DASHES[i % DASHES.len()];
        // Buckets without requests are zero, not skipped.
        let mut points = String::new();
        let mut at = first;
        while at <= last {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x(at),
                y(series.get(&at).copied().unwrap_or(0))
            );
            at += step;
        }
        let _ = write!(html, "<polyline class=series data-kind=\"{}\" fill=none stroke=\"{colour}\" stroke-opacity=0.85 stroke-width=1.6 stroke-dasharray=\"{dash}\" stroke-linejoin=round points=\"{}\" />", esc(kind), points.trim_end());
        for (at, n) in series {
            let _ = write!(
                html,
                "<circle cx={:.1} cy={:.1} r=2.5 fill=\"{colour}\"><title>{} {}: {n}</title></circle>",
                x(*at),
                y(*n),
                utc(*at),
                esc(kind)
            );
        }
        let lx = pad + 10.0 + i as f64 * 130.0;
        let _ = write!(html, "<line x1={lx} y1=13 x2={} y2=13 stroke=\"{colour}\" stroke-width=2 stroke-dasharray=\"{dash}\" /><text x={} y=17 font-size=12>{}</text>", lx + 20.0, lx + 24.0, esc(kind));
    }
    html.push_str("</svg>");
}

/// The tenants ranked by their legacy requests of the last 7 days.
fn summary(html: &mut String, report: &Report) {
    if report.tenants.is_empty() {
        return;
    }
    html.push_str("<h2>Tenants to contact</h2><table class=summary><thead><tr><th>Tenant</th><th>Customer</th><th>Contact</th><th>Requests, last 7 days</th><th>Clients</th><th>Last seen</th><th>Next phase</th></tr></thead><tbody>");
    for t in &report.tenants {
        let _ = write!(
            html,
            "<tr><td><a href=\"#tenant-{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.customer_number.as_deref().map(esc).unwrap_or_default(),
            t.contact.as_deref().map(esc).unwrap_or_default(),
            t.requests_7d,
            t.clients,
            utc(t.last_seen),
            t.held.as_ref().map(held).unwrap_or_default(),
            id = esc(&t.tenant),
        );
    }
    html.push_str("</tbody></table>");
}

/// "Phase 3 held by 2 api clients, last call …; starts … if they stay quiet."
fn held(h: &Held) -> String {
    let last = h
        .last_call
        .map(|at| format!(", last call {}", utc(at)))
        .unwrap_or_else(|| ", none heard yet".to_owned());
    let starts = h
        .releases_at
        .map(|at| format!("; starts {} if they stay quiet", utc(at)))
        .unwrap_or_default();
    esc(&format!(
        "phase {} held by {} {} client{}{last}{starts}",
        h.phase,
        h.clients,
        h.kinds.join("/"),
        if h.clients == 1 { "" } else { "s" },
    ))
}

/// The filter form: tenant and kind are typed (there may be thousands), class is chosen.
fn filters(html: &mut String, filter: &Filter) {
    let _ = write!(
        html,
        "<form class=filters method=get action=/stragglers><label>Tenant <input name=tenant value=\"{}\" size=12></label> <label>Kind <input name=kind value=\"{}\" size=10></label> <label>Class <select name=class><option value=\"\">all</option>",
        filter.tenant.as_deref().map(esc).unwrap_or_default(),
        filter.kind.as_deref().map(esc).unwrap_or_default(),
    );
    for class in ClientClass::ALL {
        let _ = write!(
            html,
            "<option{}>{}</option>",
            if filter.class == Some(class) {
                " selected"
            } else {
                ""
            },
            class.as_str()
        );
    }
    html.push_str("</select></label> <button>Filter</button>");
    if !filter.is_empty() {
        html.push_str(" <a href=/stragglers>clear</a>");
    }
    let _ = write!(
        html,
        " · <a href=\"/stragglers.csv{q}\">CSV</a> · <a href=\"/stragglers.json{q}\">JSON</a></form>",
        q = query(filter)
    );
}

/// `?tenant=…&kind=…&class=…` for the filter, or empty.
fn query(filter: &Filter) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = &filter.tenant {
        q.append_pair("tenant", t);
    }
    if let Some(k) = &filter.kind {
        q.append_pair("kind", k);
    }
    if let Some(c) = filter.class {
        q.append_pair("class", c.as_str());
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        esc(&format!("?{q}"))
    }
}

fn hour(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%H:%M").to_string())
        .unwrap_or_default()
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn utc(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>Signpost · legacy traffic</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#111}h1{margin-bottom:.2em}.muted{color:#666;font-weight:normal}
table{border-collapse:collapse;width:100%;margin:.5em 0 2em;font-size:14px}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:' \\2195';color:#aaa}.chart{width:100%;max-width:900px;height:auto;border:1px solid #eee}td.ua{max-width:28em;overflow-wrap:anywhere;font-size:12px}.filters{margin:1em 0}</style>
<h1>Legacy traffic</h1>";

const SCRIPT: &str = "<script>
document.querySelectorAll('table.clients th[data-sort]').forEach(function(th){th.addEventListener('click',function(){
var table=th.closest('table'),i=Array.prototype.indexOf.call(th.parentNode.children,th),body=table.tBodies[0];
var desc=th.dataset.dir!=='desc';th.dataset.dir=desc?'desc':'asc';
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){var x=+a.cells[i].dataset.v,y=+b.cells[i].dataset.v;return desc?y-x:x-y;});
rows.forEach(function(r){body.appendChild(r);});});});
</script></html>";
