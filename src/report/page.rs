//! The straggler page: per tenant, the legacy clients still calling, and a chart of legacy
//! requests per kind over time. Server-rendered HTML and SVG with a few lines of inline script
//! for sorting; nothing is loaded from elsewhere, so it works offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::census::{ClientRow, Report};

const COLOURS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563",
];

pub fn render(report: &Report) -> String {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(HEAD);
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
    html.push_str("<h2>Legacy requests per kind</h2>");
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
        let _ = write!(
            html,
            "<section><h2 id=\"tenant-{t}\">{t} <span class=muted>· {} · {}</span></h2>",
            plural(rows.len() as u64, "client"),
            plural(total, "request"),
            t = esc(tenant)
        );
        html.push_str("<table class=clients><thead><tr><th>Kind</th><th>Client</th><th>User-Agent</th><th>Address</th><th>Credential</th><th data-sort=num>Requests</th><th data-sort=num>First seen</th><th data-sort=num class=sorted>Last seen</th><th>Last path</th><th>Status</th></tr></thead><tbody>");
        for r in rows {
            let _ = write!(
                html,
                "<tr class=client data-tenant=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td data-v={c}>{c}</td><td data-v={f}>{}</td><td data-v={l}>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&r.tenant),
                esc(&r.kind),
                esc(&r.client.id),
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

/// One polyline per kind over the timeline's buckets.
fn chart(html: &mut String, report: &Report) {
    let (width, height, pad) = (900.0_f64, 220.0_f64, 36.0_f64);
    let mut kinds: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for p in &report.timeline {
        *kinds.entry(&p.kind).or_default().entry(p.at).or_default() += p.count;
    }
    let (Some(earliest), Some(last)) = (
        report.timeline.iter().map(|p| p.at).min(),
        report.timeline.iter().map(|p| p.at).max(),
    ) else {
        html.push_str("<p class=muted>No data yet.</p>");
        return;
    };
    // At least an hour wide, so a fresh census still draws a line up from zero.
    let first = earliest.min(last.saturating_sub(11 * report.bucket_seconds));
    let max = kinds
        .values()
        .flat_map(|s| s.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let span = (last - first).max(report.bucket_seconds) as f64;
    let x = |at: u64| pad + (at - first) as f64 / span * (width - 2.0 * pad);
    let y = |n: u64| height - pad - n as f64 / max * (height - 2.0 * pad);
    let _ = write!(html, "<svg class=chart viewBox=\"0 0 {width} {height}\" role=img aria-label=\"legacy requests per kind over time\">");
    let _ = write!(html, "<line x1={pad} y1={b} x2={r} y2={b} stroke=#999 /><line x1={pad} y1={pad} x2={pad} y2={b} stroke=#999 />", b = height - pad, r = width - pad);
    let _ = write!(
        html,
        "<text x=4 y={} font-size=11>{}</text><text x=4 y={} font-size=11>0</text>",
        pad + 4.0,
        max as u64,
        height - pad
    );
    let _ = write!(html, "<text x={pad} y={} font-size=11>{}</text><text x={} y={} font-size=11 text-anchor=end>{}</text>", height - 12.0, utc(first), width - pad, height - 12.0, utc(last));
    for (i, (kind, series)) in kinds.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
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
            at += report.bucket_seconds;
        }
        for (at, n) in series {
            let _ = write!(
                html,
                "<circle cx={:.1} cy={:.1} r=3 fill=\"{colour}\"><title>{}: {n}</title></circle>",
                x(*at),
                y(*n),
                utc(*at)
            );
        }
        let _ = write!(html, "<polyline class=series data-kind=\"{}\" fill=none stroke=\"{colour}\" stroke-width=2 points=\"{}\" />", esc(kind), points.trim_end());
        let _ = write!(html, "<rect x={} y=8 width=10 height=10 fill=\"{colour}\" /><text x={} y=17 font-size=12>{}</text>", pad + 10.0 + i as f64 * 130.0, pad + 24.0 + i as f64 * 130.0, esc(kind));
    }
    html.push_str("</svg>");
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
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:' \\2195';color:#aaa}.chart{width:100%;max-width:900px;height:auto;border:1px solid #eee}</style>
<h1>Legacy traffic</h1>";

const SCRIPT: &str = "<script>
document.querySelectorAll('table.clients th[data-sort]').forEach(function(th){th.addEventListener('click',function(){
var table=th.closest('table'),i=Array.prototype.indexOf.call(th.parentNode.children,th),body=table.tBodies[0];
var desc=th.dataset.dir!=='desc';th.dataset.dir=desc?'desc':'asc';
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){var x=+a.cells[i].dataset.v,y=+b.cells[i].dataset.v;return desc?y-x:x-y;});
rows.forEach(function(r){body.appendChild(r);});});});
</script></html>";
