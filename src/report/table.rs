//! The census as a plain-text table, for `signpost stragglers`.

use std::fmt::Write as _;

use super::census::Report;

pub fn render(report: &Report) -> String {
    let header = [
        "TENANT",
        "KIND",
        "CLIENT",
        "USER-AGENT",
        "ADDRESS",
        "CREDENTIAL",
        "REQUESTS",
        "LAST SEEN (UTC)",
        "LAST PATH",
        "STATUS",
    ];
    let rows: Vec<[String; 10]> = report
        .clients
        .iter()
        .map(|r| {
            [
                r.tenant.clone(),
                r.kind.clone(),
                r.client.id.clone(),
                r.client.user_agent.clone(),
                r.client.address.clone(),
                r.client.credential.clone().unwrap_or_default(),
                r.count.to_string(),
                jiff::Timestamp::from_second(r.last_seen as i64)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                r.last_path.clone(),
                r.last_status.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        out.push_str("(no legacy traffic seen yet)\n");
    }
    out
}
