//! `docs/api.md` lists every route the router serves, and nothing it does not.

use std::collections::BTreeSet;

/// `/api/channels/:id` and `/api/channels/{id}` both become `/api/channels/{}`.
fn normal(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|seg| {
            if seg.starts_with(':') || (seg.starts_with('{') && seg.ends_with('}')) {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The paths the router serves, from its source (`.route("<path>", ...)`).
fn served() -> BTreeSet<String> {
    let source = include_str!("lib.rs");
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(open) = rest.find('"') else { break };
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        out.insert(normal(&after[..close]));
        rest = &after[close..];
    }
    out
}

/// The paths the document's tables list: backticked paths in the first cell of a row.
fn documented() -> BTreeSet<String> {
    let doc = include_str!("../../docs/api.md");
    let mut out = BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| ")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        let mut rest = first;
        while let Some(i) = rest.find("`/") {
            let after = &rest[i + 1..];
            let Some(end) = after.find('`') else { break };
            out.insert(normal(&after[..end]));
            rest = &after[end + 1..];
        }
    }
    out
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    let (served, documented) = (served(), documented());
    // The realtime endpoint is documented with its protocol (`docs/protocol.md`).
    let undocumented: Vec<_> = served
        .difference(&documented)
        .filter(|p| !p.starts_with("/connection/"))
        .collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        served.len() > 80,
        "the router's routes were not found: {served:?}"
    );
    assert!(
        undocumented.is_empty(),
        "served, not in docs/api.md: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in docs/api.md, not served: {unserved:?}"
    );
}
