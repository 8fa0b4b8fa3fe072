//! serde_yaml's errors made to teach, and the recovery that lets `check` report more than the
//! first mistake of a file.

/// serde_yaml's message for `e` without its trailing position (the line is shown in front)
/// and without list indexes, with what to do where its words do not say it: a tab in the
/// indentation, and a block indented off its neighbours.
pub fn explain(e: &serde_yaml::Error, text: &str) -> String {
    let message = e.to_string();
    let message = match (message.rfind(" at line "), e.location()) {
        (Some(i), Some(_)) => &message[..i],
        _ => &message[..],
    };
    let message = without_indexes(message);
    let line = e
        .location()
        .and_then(|l| text.lines().nth(l.line().saturating_sub(1)))
        .unwrap_or("");
    let indent = &line[..line.len() - line.trim_start().len()];
    if indent.contains('\t') {
        return "a tab in the indentation: YAML indents with spaces only (two per level here)"
            .to_owned();
    }
    const MISALIGNED: [&str; 4] = [
        "did not find expected key",
        "mapping values are not allowed in this context",
        "did not find expected '-' indicator",
        "block sequence entries are not allowed in this context",
    ];
    if MISALIGNED.iter().any(|m| message.contains(m)) {
        return format!(
            "{message}: check this line's indentation against the lines above it (the keys of one mapping line up; each level is indented two spaces more than its parent)"
        );
    }
    message
}

/// The path in front of a message (`tenants[3].rules[0]: …`) without its list indexes: the
/// line says which item, and once an item is blanked ([`without_item_at`]) they would be off.
fn without_indexes(message: &str) -> String {
    match message.split_once(": ") {
        Some((path, rest)) if path.contains('[') && !path.contains(' ') => {
            let mut plain = String::with_capacity(message.len());
            let mut depth = 0;
            for c in path.chars() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    c if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            format!("{plain}: {rest}")
        }
        _ => message.to_owned(),
    }
}

/// `text` with the list item (else the top-level block) holding `line` (from 1) blanked out,
/// every line keeping its number; a list left empty becomes `[]`. `None` when there is
/// nothing to blank.
pub fn without_item_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = line.checked_sub(1).filter(|&i| i < lines.len())?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &&str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let item = |l: &str| {
        let t = l.trim_start();
        t == "-" || t.starts_with("- ")
    };
    // The innermost list item holding the line (its marker indented less than every line
    // from it down to the line), else the top-level key above it.
    let mut below = usize::MAX;
    let mut start = None;
    for i in (0..=at).rev().filter(|&i| content(&lines[i])) {
        let l = lines[i];
        if item(l) && indent(l) < below || indent(l) == 0 {
            start = Some(i);
            break;
        }
        below = below.min(indent(l));
    }
    let start = start?;
    let level = indent(lines[start]);
    let end = (start + 1..lines.len())
        .find(|&i| content(&lines[i]) && indent(lines[i]) <= level)
        .unwrap_or(lines.len());
    let in_list = item(lines[start]);
    let sibling = |l: &&str| item(l) && indent(l) == level;
    let sibling_above = (lines[..start].iter().rev().filter(|l| content(l)))
        .find(|l| indent(l) <= level)
        .is_some_and(sibling);
    let sibling_below = lines.get(end).is_some_and(sibling);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for line in &mut out[start..end] {
        line.clear();
    }
    if in_list && !sibling_above && !sibling_below {
        out[start] = format!("{}[]", " ".repeat(level.max(1)));
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_blanked_with_its_children_and_lines_keep_their_numbers() {
        let text =
            "tenants:\n  - id: a\n    hosts: [a.x]\n  - id: b\n    hostz: [b.x]\n  - id: c\n";
        assert_eq!(
            without_item_at(text, 5).unwrap(),
            "tenants:\n  - id: a\n    hosts: [a.x]\n\n\n  - id: c\n"
        );
        // The last item: the list becomes empty, not null.
        assert_eq!(
            without_item_at("tenants:\n  - id: a\n    hostz: x\nvars: {}\n", 3).unwrap(),
            "tenants:\n  []\n\nvars: {}\n"
        );
        // Outside any list: the top-level block.
        assert_eq!(
            without_item_at("listen:\n  htp: 1\nvars: {}\n", 2).unwrap(),
            "\n\nvars: {}\n"
        );
    }
}
