//! The documentation checked like code: every relative link in README.md
//! and the book (docs/) points at a file that exists, every `#anchor` at a
//! heading of its page (GitHub's and mdBook's anchor rule), every page
//! of the book is in its table of contents, and every alert's `runbook_url`
//! leads to its runbook entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portero_integration::docs::pages as documentation;
use portero_integration::workspace_root;
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

/// A heading's anchor as GitHub and mdBook make it: lowercase; letters,
/// digits, `-` and `_` kept; spaces become `-`; everything else dropped.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A page's headings (as anchors, repeats numbered `-1`, `-2` as GitHub
/// does) and its links.
struct Page {
    anchors: BTreeSet<String>,
    links: Vec<String>,
}

fn read_page(markdown: &str) -> Page {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let base = anchor_of(&heading.take().unwrap_or_default());
                let n = seen.entry(base.clone()).or_insert(0);
                anchors.insert(if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                });
                *n += 1;
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string());
            }
            _ => {}
        }
    }
    Page { anchors, links }
}

/// What is wrong with the links of `file` (its text `markdown`).
fn broken_links(file: &Path, markdown: &str, pages: &mut BTreeMap<PathBuf, Page>) -> Vec<String> {
    let mut broken = Vec::new();
    let dir = file.parent().unwrap_or(Path::new("."));
    for link in read_page(markdown).links {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, fragment) = match link.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (link.as_str(), None),
        };
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !path.is_empty() && !target.exists() {
            broken.push(format!("{}: {link}: no such file", file.display()));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if target.extension().is_some_and(|e| e == "md") {
            let page = pages.entry(target.clone()).or_insert_with(|| {
                read_page(&std::fs::read_to_string(&target).unwrap_or_default())
            });
            if !page.anchors.contains(fragment) {
                broken.push(format!("{}: {link}: no such heading", file.display()));
            }
        }
    }
    broken
}

#[test]
fn every_link_and_anchor_in_the_readme_and_the_book_resolves() {
    let mut pages = BTreeMap::new();
    let mut broken = Vec::new();
    let files = documentation();
    assert!(files.len() > 5, "the book's pages: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a page");
        broken.extend(broken_links(&file, &text, &mut pages));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_table_of_contents() {
    let root = workspace_root();
    let summary = std::fs::read_to_string(root.join("docs/SUMMARY.md")).expect("docs/SUMMARY.md");
    let listed: BTreeSet<String> = read_page(&summary).links.into_iter().collect();
    for page in documentation() {
        let Ok(relative) = page.strip_prefix(root.join("docs")) else {
            continue;
        };
        let name = relative.to_string_lossy().to_string();
        if name == "SUMMARY.md" {
            continue;
        }
        assert!(
            listed.contains(&name),
            "docs/{name} is not in docs/SUMMARY.md"
        );
    }
}

/// The checker itself finds what it must: a missing file, a missing
/// heading, and the anchor forms GitHub makes.
#[test]
fn the_link_checker_catches_a_dangling_file_and_a_dangling_heading() {
    assert_eq!(anchor_of("HTTP API (`/v1`)"), "http-api-v1");
    assert_eq!(
        anchor_of("Forward auth: ext_authz, nginx"),
        "forward-auth-ext_authz-nginx"
    );
    let root = workspace_root();
    let file = root.join("docs/probe.md");
    let text =
        "# One\n## One\n[ok](#one-1) [gone](#two) [file](configuration.md) [nofile](nowhere.md)\n";
    let mut pages = BTreeMap::new();
    pages.insert(file.clone(), read_page(text));
    let broken = broken_links(&file, text, &mut pages);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("#two") && broken[0].contains("no such heading"));
    assert!(broken[1].contains("nowhere.md") && broken[1].contains("no such file"));
}

/// Where the alert rules say the book is served: a placeholder that
/// operators replace (docs/operations.md, "Alert rules and a dashboard").
const BOOK_URL: &str = "https://portero.example/docs/";

/// The `###` headings under `## Runbook` of a page.
fn runbook_entries(markdown: &str) -> Vec<String> {
    let (mut entries, mut in_runbook, mut heading) = (Vec::new(), false, None);
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, h)) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => match heading.take() {
                Some((HeadingLevel::H2, h)) => in_runbook = h == "Runbook",
                Some((HeadingLevel::H3, h)) if in_runbook => entries.push(h),
                Some((HeadingLevel::H1, _)) => in_runbook = false,
                _ => {}
            },
            _ => {}
        }
    }
    entries
}

/// Each alert of docs/monitoring/alerts.yml links, in `runbook_url`, to a
/// heading of docs/operations.md named after it under "Runbook"; every
/// entry there is an alert's.
#[test]
fn every_alert_links_to_its_runbook_entry() {
    let root = workspace_root();
    let rules: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("docs/monitoring/alerts.yml")).expect("alerts.yml"),
    )
    .expect("alerts.yml is YAML");
    let markdown = std::fs::read_to_string(root.join("docs/operations.md")).expect("operations");
    let page = read_page(&markdown);
    let entries = runbook_entries(&markdown);
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("an alert").to_string();
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let link = url
                .strip_prefix(BOOK_URL)
                .unwrap_or_else(|| panic!("{alert}: {url} is not in the book ({BOOK_URL})"));
            let anchor = link
                .strip_prefix("operations.html#")
                .unwrap_or_else(|| panic!("{alert}: {url} is not an anchor of operations.html"));
            assert!(
                page.anchors.contains(anchor),
                "{alert}: docs/operations.md has no heading #{anchor}"
            );
            assert_eq!(
                anchor,
                anchor_of(&alert),
                "{alert}: {url} is another's entry"
            );
            assert!(
                entries.contains(&alert),
                "{alert}: its heading is not under Runbook: {entries:?}"
            );
            alerts.push(alert);
        }
    }
    assert!(alerts.len() >= 8, "{alerts:?}");
    for entry in &entries {
        assert!(
            alerts.contains(entry),
            "Runbook entry {entry} is no alert's"
        );
    }
}

#[test]
fn the_runbook_reader_takes_the_third_level_under_runbook_only() {
    let text = "# Ops\n## Runbook\n### A\ntext\n### `B`\n## Sizing\n### C\n";
    assert_eq!(runbook_entries(text), ["A", "B"]);
}
