//! The census as rows of cells: a plain-text table for `signpost stragglers` and CSV for the
//! spreadsheet an outreach is run from.

use std::fmt::Write as _;

use super::census::{ClientRow, Report};

const COLUMNS: [&str; 14] = [
    "tenant",
    "customer_number",
    "contact",
    "kind",
    "client",
    "class",
    "credential",
    "address",
    "requests",
    "first_seen",
    "last_seen",
    "last_path",
    "last_status",
    "user_agent",
];

fn cells(r: &ClientRow) -> [String; 14] {
    [
        r.tenant.clone(),
        r.customer_number.clone().unwrap_or_default(),
        r.contact.clone().unwrap_or_default(),
        r.kind.clone(),
        r.client.id.clone(),
        r.client.class.as_str().to_owned(),
        r.client.credential.clone().unwrap_or_default(),
        r.client.address.clone(),
        r.count.to_string(),
        utc(r.first_seen),
        utc(r.last_seen),
        r.last_path.clone(),
        r.last_status.to_string(),
        r.client.user_agent.clone(),
    ]
}

fn utc(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Columns padded to their widest cell; the User-Agent last, since it is the longest.
pub fn render(report: &Report) -> String {
    let header = COLUMNS.map(str::to_ascii_uppercase);
    let rows: Vec<[String; 14]> = report.clients.iter().map(cells).collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(row);
    }
    if rows.is_empty() {
        out.push_str("(no legacy traffic seen yet)\n");
    }
    out
}

/// RFC 4180 CSV with a header line. A cell that a spreadsheet would take for a formula
/// (`=`, `+`, `-`, `@` first: User-Agents and paths are client text) is prefixed with `'`.
pub fn csv(report: &Report) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record(COLUMNS);
    for row in &report.clients {
        let _ = out.write_record(cells(row).map(defused));
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn defused(cell: String) -> String {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}"),
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::census::{Client, ClientClass};

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let row = ClientRow {
            tenant: "exempel".into(),
            kind: "api".into(),
            client: Client {
                id: "a1b2c3d4e5f6".into(),
                user_agent: "=HYPERLINK(\"http://x\"), \"quoted\"".into(),
                address: "192.0.2.7".into(),
                credential: Some("basic:lönesystem".into()),
                class: ClientClass::Script,
            },
            first_seen: 0,
            last_seen: 60,
            count: 3,
            last_path: "/HRM/API/v1".into(),
            last_status: 200,
            customer_number: Some("5678".into()),
            contact: Some("IT-avdelningen, it@exempel.com".into()),
        };
        let text = csv(&Report {
            clients: vec![row],
            ..Report::default()
        });
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "exempel,5678,\"IT-avdelningen, it@exempel.com\",api,a1b2c3d4e5f6,script,basic:lönesystem,192.0.2.7,3,1970-01-01 00:00:00,1970-01-01 00:01:00,/HRM/API/v1,200,\"'=HYPERLINK(\"\"http://x\"\"), \"\"quoted\"\"\""
        );
    }
}
