//! The monitoring files of `contrib/` (issue 15): the Grafana dashboard's
//! queries parse as PromQL (each one a recording rule in a rules file
//! checked by `promtool check rules`, Grafana's variables replaced by
//! values), and the recommended alerts pass `promtool check rules` and
//! their unit tests (`promtool test rules`). That every metric they name
//! exists is checked against a real scrape in `tests/metrics.rs`.
//!
//! Needs `promtool` (Debian package `prometheus`): see
//! `common::promtool`.

mod common;

use common::*;
use std::process::Command;

/// Runs promtool with `args` in `dir`; panics with its output unless it
/// succeeds.
fn promtool_ok(promtool: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {report}");
    report
}

/// Grafana's variables as a query would have them at run time.
fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$instance", ".*");
    assert!(!expr.contains('$'), "unknown Grafana variable in {expr}");
    expr
}

/// Every panel of the dashboard (but the rows) has a title, a
/// description and queries; every query parses.
#[test]
fn the_dashboards_queries_parse() {
    let path = repo().join("contrib/grafana/dmarc-milter.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    assert_eq!(dashboard["uid"], "dmarc-milter");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut queries = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("title");
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: no description"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = substitute(target["expr"].as_str().expect("expr"));
            assert!(expr.contains("dmarc_milter_"), "{title}: {expr}");
            queries += 1;
            rules.push_str(&format!(
                "      - record: dashboard:query_{queries}\n        expr: {}\n",
                serde_json::Value::from(expr)
            ));
        }
    }
    assert!(queries >= 20, "{queries} queries");
    // The panels the issue asks for.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Rejections, quarantines and tempfails by reason",
        "DMARC results",
        "DNS latency",
        "DNS failure rate",
        "In flight and connections",
        "Verdict records",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted}: {titles:?}");
    }
    let Some(promtool) = promtool() else { return };
    let dir = TempDir::new("dashboard-rules");
    std::fs::write(dir.path().join("dashboard.yml"), rules).expect("write rules");
    let report = promtool_ok(promtool, dir.path(), &["check", "rules", "dashboard.yml"]);
    assert!(
        report.contains(&format!("SUCCESS: {queries} rules found")),
        "{report}"
    );
}

/// The alerts parse, and fire (or not) as their unit tests say.
#[test]
fn the_recommended_alerts_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = repo().join("contrib/prometheus");
    let report = promtool_ok(promtool, &dir, &["check", "rules", "alerts.yml"]);
    assert!(report.contains("SUCCESS"), "{report}");
    let report = promtool_ok(promtool, &dir, &["test", "rules", "alerts_test.yml"]);
    assert!(report.contains("SUCCESS"), "{report}");
}
