//! The monitoring kit (`docs/monitoring/`) held to the product:
//!
//! - the alert rules and the Grafana dashboard use only metrics and labels
//!   that portero publishes, under the names Envoy and the sidecar really
//!   give them (read from a running stack), and match only label values the
//!   code produces;
//! - with the sidecar, then Redis, down, every series the alerts for them
//!   select is there;
//! - the book's metric tables name what is published, and every published
//!   metric is on the operations page;
//! - every alert is unit-tested firing and silent (`make monitoring-test`
//!   runs those tests with promtool), and the dashboard is well formed.
//!
//! Each alert's runbook link is checked by docs.rs, with the book's links.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use portero_core::http::ClientKind;
use portero_core::metrics::{
    CacheKind, Counter, Outcome, SidecarError, FAMILIES, SIDECAR_LATENCY_US,
};
use portero_core::policy::{BindingField, MismatchPolicy};
use portero_core::reject::Reason;
use portero_core::token::TokenError;
use portero_integration::{workspace_root, Stack};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value;

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// How long until counts reach Envoy's stats: each worker hands them over
/// about once a second.
const FLUSH: Duration = Duration::from_millis(1200);

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("docs/monitoring/grafana-dashboard.json"))
        .expect("the dashboard's JSON")
}

/// Every rule of `docs/monitoring/alerts.yml`.
fn rules() -> Vec<Value> {
    yaml("docs/monitoring/alerts.yml")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    rules()
        .iter()
        .map(|r| {
            r["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string()
        })
        .collect()
}

fn alert_expr(name: &str) -> String {
    rules()
        .into_iter()
        .find(|r| r["alert"] == name)
        .and_then(|r| r["expr"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no alert {name}"))
}

/// The dashboard's panels, those inside collapsed rows too.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel.clone());
        all.extend(panel["panels"].as_array().cloned().unwrap_or_default());
    }
    all
}

/// Every PromQL expression of the rules and the dashboard, with its place.
fn expressions() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for rule in rules() {
        let name = rule["alert"].as_str().unwrap_or("?");
        let expr = rule["expr"].as_str().expect("expr");
        all.push((format!("alerts.yml {name}"), expr.to_string()));
    }
    for panel in panels(&dashboard()) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            // Grafana's own variables, filled in as Grafana does.
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h");
            all.push((format!("grafana-dashboard.json {}", panel["title"]), expr));
        }
    }
    all
}

// ── PromQL: what an expression uses ─────────────────────────────────────

/// A label matcher: `label`, whether it is negated, and the values it
/// names (a regex must be a plain alternation, `a|b`, so they can be told).
#[derive(Debug)]
struct Matcher {
    label: String,
    negated: bool,
    values: Vec<String>,
}

#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    fn matches(&self, sample: &Sample) -> bool {
        sample.name == self.metric
            && self.matchers.iter().all(|m| {
                let value = sample.labels.get(&m.label).map_or("", String::as_str);
                m.values.iter().any(|v| v == value) != m.negated
            })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let matchers: Vec<String> = self
            .matchers
            .iter()
            .map(|m| {
                let op = if m.negated { "!~" } else { "=~" };
                format!("{}{op}\"{}\"", m.label, m.values.join("|"))
            })
            .collect();
        write!(f, "{}{{{}}}", self.metric, matchers.join(","))
    }
}

/// The selectors of an expression and the labels its `by`, `without`,
/// `on`, `ignoring` and `group_*` clauses name.
#[derive(Default)]
struct Uses {
    selectors: Vec<Selector>,
    grouping: BTreeSet<String>,
}

impl Uses {
    fn selector(&mut self, vs: &VectorSelector) -> Result<(), String> {
        let metric = vs
            .name
            .clone()
            .ok_or_else(|| "a selector without a metric name".to_string())?;
        if !vs.matchers.or_matchers.is_empty() {
            return Err(format!("{metric}: `or` inside a selector"));
        }
        let mut matchers = Vec::new();
        for m in vs.matchers.matchers.iter().filter(|m| m.name != "__name__") {
            let (negated, regex) = match m.op {
                MatchOp::Equal => (false, false),
                MatchOp::NotEqual => (true, false),
                MatchOp::Re(_) => (false, true),
                MatchOp::NotRe(_) => (true, true),
            };
            let values: Vec<String> = if regex {
                m.value.split('|').map(str::to_string).collect()
            } else {
                vec![m.value.clone()]
            };
            if let Some(v) = values.iter().find(|v| {
                v.is_empty()
                    || !v.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/')
                    })
            }) {
                return Err(format!(
                    "{metric}: {}'s value {v:?} is not a plain value or alternation",
                    m.name
                ));
            }
            matchers.push(Matcher {
                label: m.name.clone(),
                negated,
                values,
            });
        }
        self.selectors.push(Selector { metric, matchers });
        Ok(())
    }
}

impl ExprVisitor for Uses {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs)?,
            Expr::MatrixSelector(ms) => self.selector(&ms.vs)?,
            Expr::Aggregate(aggregate) => {
                if let Some(modifier) = &aggregate.modifier {
                    self.grouping
                        .extend(modifier.labels().labels.iter().cloned());
                }
            }
            Expr::Binary(binary) => {
                if let Some(modifier) = &binary.modifier {
                    if let Some(matching) = &modifier.matching {
                        self.grouping
                            .extend(matching.labels().labels.iter().cloned());
                    }
                    if let Some(labels) = modifier.card.labels() {
                        self.grouping.extend(labels.labels.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

fn uses(place: &str, expr: &str) -> Uses {
    let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{place}: {expr}: {e}"));
    let mut uses = Uses::default();
    walk_expr(&mut uses, &parsed).unwrap_or_else(|e| panic!("{place}: {e}"));
    uses
}

#[test]
fn the_promql_reader_finds_selectors_and_grouping_labels() {
    let found = uses(
        "probe",
        r#"sum by (job, instance) (rate(a{kind=~"x|y"}[1m])) > 0
           unless on (instance) b{result!="z"} or vector(0)"#,
    );
    let seen: Vec<String> = found.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, [r#"a{kind=~"x|y"}"#, r#"b{result!~"z"}"#]);
    assert_eq!(
        found.grouping,
        BTreeSet::from(["instance".to_string(), "job".to_string()])
    );
}

// ── The Prometheus text formats ─────────────────────────────────────────

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `# TYPE` lines (family → type) and samples of an exposition (Envoy's
/// Prometheus text or the sidecar's OpenMetrics).
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{')?;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        rest = after.get(end + 1..)?;
    }
}

fn parse_exposition(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_string();
        let (labels, rest) = match parse_labels(&line[end..]) {
            Some(parsed) => parsed,
            None => (BTreeMap::new(), &line[end..]),
        };
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a sample without a value: {line}"));
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Exposition { types, samples }
}

#[test]
fn the_exposition_reader_reads_quoted_braces_and_empty_label_sets() {
    let read = parse_exposition(
        "# TYPE x counter\nx{route=\"/v1/s/{handle}\",q=\"a\\\"b\"} 2\ny{} 1.5\nz 3\n# EOF\n",
    );
    assert_eq!(read.types["x"], "counter");
    assert_eq!(read.samples.len(), 3);
    assert_eq!(read.samples[0].labels["route"], "/v1/s/{handle}");
    assert_eq!(read.samples[0].labels["q"], "a\"b");
    assert_eq!(read.samples[0].value, 2.0);
    assert!(read.samples[1].labels.is_empty() && read.samples[1].value == 1.5);
    assert_eq!(read.samples[2].name, "z");
}

// ── What portero publishes ──────────────────────────────────────────────

/// A metric family: its type and label names.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The Prometheus name of a metric the filter defines (`portero.requests`):
/// Envoy takes its custom-stat namespace (`wasmcustom.`, and for the
/// dynamic module `dynamicmodulescustom.` under the runtime guard) off and
/// writes the dots as underscores; the labels spelled into wasm names are
/// taken out by the `stats_tags` of envoy/envoy.yaml.
fn envoy_name(defined: &str) -> String {
    defined.replace('.', "_")
}

/// The filter's families, from `crates/portero-core/src/metrics.rs`.
fn filter_families() -> BTreeMap<String, Family> {
    let mut families = BTreeMap::new();
    for family in FAMILIES {
        families.insert(
            envoy_name(&format!("portero.{}", family.name)),
            Family {
                kind: "counter".into(),
                labels: family.labels.iter().map(|l| l.to_string()).collect(),
            },
        );
    }
    families.insert(
        envoy_name(SIDECAR_LATENCY_US),
        Family {
            kind: "histogram".into(),
            labels: BTreeSet::new(),
        },
    );
    families
}

/// The sidecar's families, from its `/metrics`: their types, and the
/// labels of their samples.
fn sidecar_families(exposition: &Exposition) -> BTreeMap<String, Family> {
    let mut families = BTreeMap::new();
    for (name, kind) in &exposition.types {
        let mut labels = BTreeSet::new();
        for sample in &exposition.samples {
            if sample_names(name, kind, true).contains(&sample.name) {
                labels.extend(sample.labels.keys().filter(|l| *l != "le").cloned());
            }
        }
        families.insert(
            name.clone(),
            Family {
                kind: kind.clone(),
                labels,
            },
        );
    }
    families
}

/// The names a family's samples have (`openmetrics`: counters end in
/// `_total`, as the sidecar's do; Envoy's do not).
fn sample_names(family: &str, kind: &str, openmetrics: bool) -> Vec<String> {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        "counter" if openmetrics => vec![format!("{family}_total")],
        _ => vec![family.to_string()],
    }
}

/// Every series name one can query, with its labels (Prometheus's own
/// `up` included).
fn queryable(live: &Live) -> BTreeMap<String, BTreeSet<String>> {
    let mut series = BTreeMap::new();
    let sidecar = parse_exposition(&live.sidecar);
    for (families, openmetrics) in [
        (filter_families(), false),
        (sidecar_families(&sidecar), true),
    ] {
        for (name, family) in families {
            for sample in sample_names(&name, &family.kind, openmetrics) {
                let mut labels = family.labels.clone();
                if sample.ends_with("_bucket") && family.kind == "histogram" {
                    labels.insert("le".into());
                }
                series.insert(sample, labels);
            }
        }
    }
    series.insert("up".into(), BTreeSet::new());
    for labels in series.values_mut() {
        labels.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
    }
    series
}

/// The job names of `docs/monitoring/prometheus.yml`.
fn jobs() -> BTreeSet<String> {
    yaml("docs/monitoring/prometheus.yml")["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .map(|c| c["job_name"].as_str().expect("job_name").to_string())
        .collect()
}

/// The values the code gives `label` of `metric`, where they are a closed
/// set (`None`: not checked, e.g. the sidecar's routes).
fn values_of(metric: &str, label: &str) -> Option<BTreeSet<String>> {
    let strings = |v: Vec<&str>| -> Option<BTreeSet<String>> {
        Some(v.into_iter().map(str::to_string).collect())
    };
    let from_counters = |counters: Vec<Counter>| -> Option<BTreeSet<String>> {
        let mut values = BTreeSet::new();
        for counter in counters {
            let family = FAMILIES.get(counter.family_index())?;
            if let Some(i) = family.labels.iter().position(|l| *l == label) {
                values.insert(counter.label_values().get(i)?.to_string());
            }
        }
        Some(values)
    };
    if label == "job" {
        return Some(jobs());
    }
    match (metric, label) {
        ("portero_sidecar_errors", "kind") => from_counters(
            [
                SidecarError::DispatchFailed,
                SidecarError::NoAnswer,
                SidecarError::ErrorStatus,
                SidecarError::BadReply,
            ]
            .map(Counter::Sidecar)
            .to_vec(),
        ),
        ("portero_requests", "flow") => strings(
            [
                ClientKind::Anonymous,
                ClientKind::Cookie,
                ClientKind::Bearer,
            ]
            .map(ClientKind::name)
            .to_vec(),
        ),
        ("portero_requests", "outcome") => {
            let mut outcomes: Vec<&str> = [Outcome::Allowed, Outcome::Anonymous, Outcome::RouteOff]
                .map(Outcome::name)
                .to_vec();
            outcomes.extend(
                [
                    Reason::NoCredentials,
                    Reason::CookieInvalid,
                    Reason::SessionNotFound,
                    Reason::SessionRevoked,
                    Reason::UserBanned,
                    Reason::TokenReplayed,
                    Reason::SessionTokensInvalid,
                    Reason::CrossSiteRequest,
                    Reason::BindingMismatch,
                    Reason::MissingRole,
                    Reason::SidecarUnavailable,
                    Reason::SidecarBadReply,
                    Reason::AmbiguousPath,
                ]
                .map(Reason::code),
            );
            outcomes.extend(
                [
                    TokenError::TooLong,
                    TokenError::Malformed,
                    TokenError::DisallowedAlgorithm,
                    TokenError::MissingKeyId,
                    TokenError::UnknownKeyId,
                    TokenError::BadSignature,
                    TokenError::WrongIssuer,
                    TokenError::WrongAudience,
                    TokenError::Expired,
                    TokenError::NotYetValid,
                    TokenError::MissingSessionId,
                ]
                .map(TokenError::reason),
            );
            strings(outcomes)
        }
        ("portero_binding_mismatches", _) => {
            let mut counters = Vec::new();
            for field in [BindingField::Ip, BindingField::UserAgent] {
                for action in [MismatchPolicy::Log, MismatchPolicy::Reject] {
                    counters.push(Counter::BindingMismatch { field, action });
                }
            }
            from_counters(counters)
        }
        ("portero_cache_lookups", _) => {
            let mut counters = Vec::new();
            for cache in [CacheKind::Tokens, CacheKind::Sessions] {
                for hit in [true, false] {
                    counters.push(Counter::Cache { cache, hit });
                }
            }
            from_counters(counters)
        }
        // The results are named where the background duties count them:
        // a value must be one of that file's string literals.
        ("portero_revocation_feed_polls" | "portero_jwks_fetches", "result") => {
            let source = read("crates/portero-core/src/background.rs");
            let literals = source
                .split('"')
                .skip(1)
                .step_by(2)
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .collect();
            strings(literals)
        }
        _ => None,
    }
}

// ── A running stack, scraped healthy and in two outages ─────────────────

struct Live {
    /// Envoy's /stats/prometheus after an anonymous request, a login and
    /// two look-ups.
    envoy: String,
    /// The sidecar's /metrics then.
    sidecar: String,
    /// Envoy's, the sidecar stopped and requests refused with 503.
    envoy_sidecar_down: String,
    /// The sidecar's, Redis stopped behind it.
    sidecar_redis_down: String,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(scrape)
}

fn scrape() -> Live {
    let mut stack = Stack::start();
    let sidecar_metrics = |stack: &Stack| {
        let reply = stack.send("GET", &stack.sidecar_url("/metrics"), &[], None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    assert_eq!(stack.request("GET", "/me", &[], None).status, 401);
    let cookie = stack.login_web("ada", "lovelace");
    for _ in 0..2 {
        assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    }
    sleep(FLUSH);
    let envoy = stack.prometheus();
    let sidecar = sidecar_metrics(&stack);

    // The sidecar down: cached views are served for the feed's staleness
    // bound (3 s), then every request is a 503. The dynamic module polls
    // the feed from requests, so a few more come.
    stack.stop_sidecar();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.me_with_cookie(&cookie).status != 503 {
        assert!(
            Instant::now() < deadline,
            "never a 503 with the sidecar down"
        );
        sleep(Duration::from_millis(50));
    }
    for _ in 0..4 {
        assert_eq!(stack.me_with_cookie(&cookie).status, 503);
        sleep(Duration::from_millis(300));
    }
    sleep(FLUSH);
    let envoy_sidecar_down = stack.prometheus();

    // Redis down behind a running sidecar: its readiness check and the
    // feed's polls fail on the store.
    stack.start_sidecar();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.me_with_cookie(&cookie).status != 200 {
        assert!(
            Instant::now() < deadline,
            "not served again after the sidecar's restart"
        );
        sleep(Duration::from_millis(100));
    }
    stack.stop_redis();
    let ready = stack.send("GET", &stack.sidecar_url("/readyz"), &[], None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    let sidecar_redis_down = sidecar_metrics(&stack);
    Live {
        envoy,
        sidecar,
        envoy_sidecar_down,
        sidecar_redis_down,
    }
}

// ── The tests ───────────────────────────────────────────────────────────

/// What the rules and the dashboard assume of the filter's names holds in
/// this shell (`PORTERO_SHELL`): every `portero_` family Envoy publishes
/// is one of `metrics.rs`, of the same type, with its labels.
#[test]
fn envoy_publishes_the_filter_metrics_under_the_names_derived_from_the_code() {
    let envoy = parse_exposition(&live().envoy);
    let derived = filter_families();
    let published: Vec<(&String, &String)> = envoy
        .types
        .iter()
        .filter(|(name, _)| name.starts_with("portero_"))
        .collect();
    for (name, kind) in &published {
        let family = derived
            .get(*name)
            .unwrap_or_else(|| panic!("Envoy publishes {name}, which metrics.rs does not define"));
        assert_eq!(&family.kind, *kind, "{name}'s type");
        for sample in &envoy.samples {
            if sample_names(name, kind, false).contains(&sample.name) {
                let labels: BTreeSet<String> = sample
                    .labels
                    .keys()
                    .filter(|l| *l != "le")
                    .cloned()
                    .collect();
                assert_eq!(labels, family.labels, "{}'s labels", sample.name);
            }
        }
    }
    // What the traffic made is there.
    for made in [
        "portero_requests",
        "portero_sidecar_latency_us",
        "portero_revocation_feed_polls",
        "portero_jwks_fetches",
    ] {
        assert!(
            envoy.types.contains_key(made),
            "{made} not on Envoy's /stats/prometheus: {published:?}"
        );
    }
}

#[test]
fn the_rules_and_the_dashboard_use_only_published_metrics_labels_and_values() {
    let queryable = queryable(live());
    let expressions = expressions();
    assert!(expressions.len() >= 30, "{} expressions", expressions.len());
    let mut wrong = Vec::new();
    for (place, expr) in &expressions {
        let uses = uses(place, expr);
        let mut labels_here = BTreeSet::new();
        for selector in &uses.selectors {
            let Some(labels) = queryable.get(&selector.metric) else {
                wrong.push(format!("{place}: {} is not published", selector.metric));
                continue;
            };
            labels_here.extend(labels.iter().cloned());
            for matcher in &selector.matchers {
                if !labels.contains(&matcher.label) {
                    wrong.push(format!(
                        "{place}: {} has no label {}",
                        selector.metric, matcher.label
                    ));
                }
                let Some(known) = values_of(&selector.metric, &matcher.label) else {
                    continue;
                };
                for value in &matcher.values {
                    if !known.contains(value) {
                        wrong.push(format!(
                            "{place}: {}'s {} is never {value:?} (it is one of {known:?})",
                            selector.metric, matcher.label
                        ));
                    }
                }
            }
        }
        for label in &uses.grouping {
            if !labels_here.contains(label) {
                wrong.push(format!("{place}: groups by {label}, which its series lack"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The alerts for a dead sidecar and for Redis trouble select series that
/// exist in that very outage (names, labels and values as published).
#[test]
fn with_the_sidecar_or_redis_down_the_series_their_alerts_select_are_there() {
    let live = live();
    let envoy = parse_exposition(&live.envoy_sidecar_down);
    let sidecar = parse_exposition(&live.sidecar_redis_down);
    for (alert, exposition) in [
        ("PorteroSidecarUnreachable", &envoy),
        ("PorteroRequestsFailingClosed", &envoy),
        ("PorteroRevocationFeedStale", &envoy),
        ("PorteroStoreErrors", &sidecar),
    ] {
        for selector in uses(alert, &alert_expr(alert)).selectors {
            assert!(
                exposition
                    .samples
                    .iter()
                    .any(|s| selector.matches(s) && s.value > 0.0),
                "{alert}: nothing matches {selector} in the outage"
            );
        }
    }
}

/// Every row of a `| series | meaning |` table in the README or the book
/// names a published metric with its labels; every published metric has a
/// row on the operations page.
#[test]
fn the_books_metric_tables_name_what_is_published() {
    let live = live();
    let mut families = filter_families();
    let sidecar = sidecar_families(&parse_exposition(&live.sidecar));
    assert!(!sidecar.is_empty(), "no family on the sidecar's /metrics");
    families.extend(sidecar.clone());
    // A row may name a family or its sample (`…_total`).
    let mut names: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (name, family) in &families {
        let openmetrics = sidecar.contains_key(name);
        names.insert(name.clone(), (name.clone(), family.labels.clone()));
        for sample in sample_names(name, &family.kind, openmetrics) {
            names.insert(sample, (name.clone(), family.labels.clone()));
        }
    }
    let root = workspace_root();
    let mut pages = vec![root.join("README.md")];
    pages.extend(
        std::fs::read_dir(root.join("docs"))
            .expect("docs/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut wrong = Vec::new();
    let mut on_operations = BTreeSet::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("a page");
        let short = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("| series |") {
                in_table = true;
                continue;
            }
            in_table &= line.starts_with('|');
            if !in_table || line.starts_with("| ---") {
                continue;
            }
            let cell = match line.strip_prefix("| `") {
                Some(rest) => rest.split('`').next().unwrap_or_default(),
                None => {
                    wrong.push(format!("{short}: a series row without a name: {line}"));
                    continue;
                }
            };
            let (name, labels) = match cell.split_once('{') {
                Some((name, labels)) => (
                    name,
                    labels
                        .trim_end_matches('}')
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect(),
                ),
                None => (cell, BTreeSet::new()),
            };
            match names.get(name) {
                None => wrong.push(format!("{short}: {name} is not published")),
                Some((family, published)) => {
                    if &labels != published {
                        wrong.push(format!(
                            "{short}: {name} has labels {published:?}, the table says {labels:?}"
                        ));
                    }
                    if short == "docs/operations.md" {
                        on_operations.insert(family.clone());
                    }
                }
            }
        }
    }
    for family in families.keys() {
        if !on_operations.contains(family) {
            wrong.push(format!("docs/operations.md has no row for {family}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each alert has promtool cases where it fires and where it stays silent,
/// its severity and its annotations.
#[test]
fn every_alert_is_unit_tested_firing_and_silent() {
    let tests = yaml("docs/monitoring/alerts.test.yml");
    assert_eq!(tests["rule_files"], serde_json::json!(["alerts.yml"]));
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_array().expect("tests") {
        for case in group["alert_rule_test"]
            .as_array()
            .expect("alert_rule_test")
        {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_array() {
                Some(expected) if !expected.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    let alerts = alert_names();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in &alerts {
        assert!(fires.contains(alert), "no test where {alert} fires");
        assert!(silent.contains(alert), "no test where {alert} stays silent");
    }
    for tested in fires.union(&silent) {
        assert!(
            alerts.contains(tested),
            "a test of {tested}, which is no alert"
        );
    }
    for rule in rules() {
        let name = &rule["alert"];
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}'s severity: {severity:?}"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name} has no {annotation}"
            );
        }
    }
}

/// The dashboard imports: one Prometheus data source variable that every
/// panel and query uses, unique panel ids and query ids, panels that do not
/// overlap on Grafana's 24-column grid.
#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "portero");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable"
    );
    let source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("a title").to_string();
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos"));
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: {grid}");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title.clone(), [x, y, w, h]));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], source, "{title}'s data source");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(
                target["datasource"], source,
                "{title}'s query's data source"
            );
            assert!(
                refs.insert(target["refId"].to_string()),
                "{title}: refId reused"
            );
        }
    }
}
